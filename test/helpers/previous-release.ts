import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');

/**
 * The previous release of the server, for rolling-upgrade tests: version 0.1.0, cluster link
 * protocol 2.0 (this one speaks 2.1, which adds messages 2.0 nodes ignore).
 */
export const PREVIOUS_RELEASE = { commit: 'd2bc8eddec9f7d59f374b9da2164afd525159125', version: '0.1.0', protocol: '2.0' };

/**
 * Builds the previous release from this repository's history (git archive, then tsc with this
 * checkout's node_modules) into a folder of the system's temporary directory, kept between runs,
 * and returns its main.js. Undefined, with the reason, when the history does not hold it (a
 * shallow clone).
 */
export function buildPreviousRelease(): { main?: string; reason?: string } {
  const commit = PREVIOUS_RELEASE.commit;
  try {
    execFileSync('git', ['-C', ROOT, 'cat-file', '-e', `${commit}^{commit}`], { stdio: 'ignore' });
  } catch {
    return { reason: `the previous release (${commit.slice(0, 10)}) is not in this clone's history (git fetch --unshallow)` };
  }
  const dir = path.join(os.tmpdir(), `xmpp-previous-release-${commit.slice(0, 12)}`);
  const main = path.join(dir, 'dist', 'server', 'main.js');
  // Kept between runs, unless the checkout whose node_modules it links to is gone (existsSync follows the link).
  if (existsSync(main) && existsSync(path.join(dir, 'node_modules'))) return { main };
  // Built aside and renamed into place, so a run killed half-way leaves nothing that looks built.
  const work = `${dir}.${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const tar = execFileSync('git', ['-C', ROOT, 'archive', '--format=tar', commit, 'server', 'components', 'strategies', 'scripts', 'tsconfig.json', 'package.json'], { maxBuffer: 256 * 1024 * 1024 });
  execFileSync('tar', ['-x', '-C', work], { input: tar });
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(work, 'node_modules'));
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(work, 'tsconfig.json')], { stdio: 'inherit' });
  rmSync(dir, { recursive: true, force: true });
  renameSync(work, dir);
  return { main };
}
