import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { client as xmppClient, xml } from '@xmpp/client';
import { freePort } from '../helpers/server';

const ROOT = path.resolve(__dirname, '..', '..');
const MAIN = path.join(ROOT, 'dist', 'server', 'main.js');
const XMPPCTL = path.join(ROOT, 'dist', 'scripts', 'xmppctl.js');

t.test('the shipped etc/init.properties starts a node that serves localhost with no other step', async (t) => {
  t.ok(existsSync(MAIN), 'dist/ is built (npm test builds first)');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xmpp-start-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(path.join(dir, 'etc'));
  cpSync(path.join(ROOT, 'etc', 'init.properties'), path.join(dir, 'etc', 'init.properties'));
  const [c2s, c2sTls] = [await freePort(), await freePort()];
  // The default ports may be taken on a test machine: override them as an operator would.
  const overrides = [`--c2s-ports=${c2s}`, `--c2s-ssl-ports=${c2sTls}`, '--bind-address=127.0.0.1', '--ws-ports=0', '--bosh-ports=0', '--http-port=0', '--s2s-ports=0', '--s2s-ssl-ports=0'];

  const added = spawnSync(process.execPath, [XMPPCTL, '--config', 'etc/init.properties', ...overrides, 'adduser', 'alice@localhost', 'alice-password'], { cwd: dir, encoding: 'utf8' });
  t.equal(added.status, 0, `xmppctl adduser succeeds: ${added.stderr}`);

  const node = spawn(process.execPath, [MAIN, '--config', 'etc/init.properties', ...overrides], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  node.stdout.on('data', (d) => (output += d));
  node.stderr.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => node.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (node.exitCode === null) node.kill('SIGKILL');
  });
  const started = Date.now();
  while (!/node started/.test(output)) {
    if (node.exitCode !== null || Date.now() - started > 20000) t.fail(`node did not start: ${output}`);
    if (node.exitCode !== null || Date.now() - started > 20000) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  t.ok(existsSync(path.join(dir, 'var', 'xmpp.sqlite')), 'SQLite database created under var/');
  t.ok(existsSync(path.join(dir, 'var', 'tls', 'cert.pem')), 'self-signed certificate generated under var/tls/');

  process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
  const alice = xmppClient({ service: `xmpp://127.0.0.1:${c2s}`, domain: 'localhost', username: 'alice', password: 'alice-password' });
  alice.on('error', () => undefined);
  await alice.start();
  t.equal(alice.jid?.bare().toString(), 'alice@localhost', 'a user added with xmppctl logs in');
  const pong = await alice.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
  t.equal(pong.attrs.type, 'result');
  const items = await alice.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#items' })));
  const services = items.getChild('query')!.getChildren('item').map((i: { attrs: { jid: string } }) => i.attrs.jid).sort();
  t.same(services, ['muc.localhost', 'pubsub.localhost', 'upload.localhost'], 'group chat, publish-subscribe and file upload are on by default');
  await alice.stop();

  node.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM shuts the node down cleanly');
  t.match(output, /node stopped/);
});

t.test('a bad configuration value stops start-up with a message naming the key', async (t) => {
  const result = spawnSync(process.execPath, [MAIN, '--c2s-ports=not-a-port'], { encoding: 'utf8' });
  t.not(result.status, 0);
  t.match(result.stderr, /--c2s-ports/);
});
