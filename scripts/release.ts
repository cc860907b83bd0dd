import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');

/** What a release archive holds: the built server, its configuration samples and what npm needs to install it. */
const CONTENTS = ['dist', 'etc', 'strategies/examples', 'scripts/build-if-possible.cjs', 'package.json', 'package-lock.json', 'README.md', 'LICENSE'];

/**
 * `npm run release [-- DIR]`: writes xmpp-cluster-server-VERSION.tar.gz (into DIR, default the
 * working directory) with dist/ already built, so a production host installs it with
 * `npm ci --omit=dev` and starts it without TypeScript or a compile.
 */
function main(argv: string[]): void {
  const out = path.resolve(argv[0] ?? '.');
  const { name, version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };
  if (!existsSync(path.join(ROOT, 'dist', 'server', 'main.js'))) throw new Error('dist/ is missing: npm run release builds it first');
  const folder = `${name}-${version}`;
  const archive = path.join(out, `${folder}.tar.gz`);
  // One top folder in the archive, named after the release.
  const staging = mkdtempSync(path.join(os.tmpdir(), 'xmpp-release-'));
  try {
    symlinkSync(ROOT, path.join(staging, folder));
    execFileSync('tar', ['-czhf', archive, '-C', staging, ...CONTENTS.map((entry) => path.join(folder, entry))], { stdio: 'inherit' });
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  process.stdout.write(`${archive}\n`);
}

main(process.argv.slice(2));
