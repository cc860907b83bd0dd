import { execFile, spawn } from 'node:child_process';
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { connectClient } from '../helpers/client';
import type { TapTest } from '../helpers/databases';
import { eventually, httpGet } from '../helpers/cluster';
import { freePort } from '../helpers/server';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..');
const WAIT_MS = 60_000;

// The production install the README describes: a release archive with dist/ built, installed with
// `npm ci --omit=dev` (no TypeScript, no compile) and started with `npm start`.
t.test('a release archive installs with npm ci --omit=dev and starts without a compile', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xmpp-release-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { stdout } = await run(process.execPath, [path.join(ROOT, 'dist', 'scripts', 'release.js'), dir]);
  const archive = stdout.trim();
  t.match(path.basename(archive), /^xmpp-cluster-server-\d+\.\d+\.\d+\.tar\.gz$/, 'npm run release writes the archive');
  await run('tar', ['-xzf', archive, '-C', dir]);
  const home = path.join(dir, path.basename(archive, '.tar.gz'));
  // --prefer-offline: the packages are in npm's cache since this checkout's own npm ci. SQLite's
  // native module comes as a prebuilt binary, as on a machine that reaches its download host.
  const mirror = await prebuiltSqliteMirror(t, dir);
  await run('npm', ['ci', '--omit=dev', '--prefer-offline', '--no-audit', '--no-fund'], {
    cwd: home,
    maxBuffer: 16 * 1024 * 1024,
    timeout: 240_000,
    env: { ...process.env, npm_config_better_sqlite3_binary_host: mirror.host },
  });
  t.ok(mirror.served() > 0, 'the native SQLite module was installed from its prebuilt binary');
  t.notOk(existsSync(path.join(home, 'node_modules', 'typescript')), 'no TypeScript installed');
  t.notOk(existsSync(path.join(home, 'server')), 'and no sources: the archive carries dist/ only');

  const [c2s, http] = [await freePort(), await freePort()];
  const overrides = [
    `--c2s-ports=${c2s}`, '--c2s-ssl-ports=0', '--s2s-ports=0', '--s2s-ssl-ports=0', '--ws-ports=0', '--bosh-ports=0', `--http-port=${http}`,
    '--bind-address=127.0.0.1', `--data-dir=${path.join(home, 'var')}`, '--scram-iterations=4096',
  ];
  await run('npm', ['run', '--silent', 'xmppctl', '--', ...overrides, 'adduser', 'alice@localhost', 'a-long-password'], { cwd: home });
  const node = spawn('npm', ['start', '--', ...overrides], { cwd: home, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  node.stdout!.on('data', (d) => (output += d));
  node.stderr!.on('data', (d) => (output += d));
  // 'close': npm and the node it started (which shares npm's pipes) are both gone, and all output is read.
  const exited = new Promise<number | null>((resolve) => node.once('close', (code) => resolve(code)));
  t.teardown(() => {
    try {
      process.kill(-node.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  });
  await eventually('the node started', () => /node started/.test(output) || node.exitCode !== null, WAIT_MS);
  if (!/node started/.test(output)) t.comment(output.slice(-3000));
  t.match(output, /node started/, 'npm start ran the node');
  t.equal((await httpGet(http, '/health/ready')).status, 200, 'it is ready');
  const alice = await connectClient({ service: `xmpp://127.0.0.1:${c2s}`, domain: 'localhost', local: 'alice', password: 'a-long-password' });
  t.equal(alice.jid?.bare().toString(), 'alice@localhost', 'a real client logs in');
  await alice.stop();
  // As systemd stops a service (SIGTERM to every process of it) or Ctrl-C in a terminal.
  process.kill(-node.pid!, 'SIGTERM');
  await exited;
  t.match(output, /shutting down[\s\S]*node stopped/, 'and it stops cleanly');
});

/**
 * better-sqlite3 installs with prebuild-install, which downloads a binary for this Node and
 * platform from its release host and compiles from source (minutes of CPU) only when it cannot.
 * Tests have no internet: this serves, on loopback, the binary this checkout's own install made,
 * packed as prebuild-install expects, at `host` (for npm_config_better_sqlite3_binary_host).
 */
async function prebuiltSqliteMirror(t: TapTest, dir: string): Promise<{ host: string; served(): number }> {
  const moduleDir = path.join(ROOT, 'node_modules', 'better-sqlite3');
  const { version } = JSON.parse(readFileSync(path.join(moduleDir, 'package.json'), 'utf8')) as { version: string };
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  const tarball = path.join(dir, name);
  await run('tar', ['-czf', tarball, '-C', moduleDir, 'build/Release/better_sqlite3.node']);
  let served = 0;
  const server: Server = createServer((req, res) => {
    if (req.url !== `/v${version}/${name}`) return void res.writeHead(404).end();
    served++;
    res.writeHead(200, { 'Content-Type': 'application/gzip' });
    createReadStream(tarball).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { host: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, served: () => served };
}
