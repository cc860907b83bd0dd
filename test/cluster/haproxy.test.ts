import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import t from 'tap';
import * as XMPP from 'stanza';
import { loadOrCreateCertificate } from '../../server/tls';
import { connectClient } from '../helpers/client';
import { eventually, startCluster } from '../helpers/cluster';
import { createClusterDatabase } from '../helpers/databases';
import { PASSWORD, STREAM_OPEN, freePort, nextStanza, xml } from '../helpers/server';
import { stanzaStop } from '../helpers/stanza';
import { ctl } from '../helpers/xmppctl';

const ROOT = path.resolve(__dirname, '../..');
const HAPROXY = ['/usr/sbin/haproxy', '/usr/bin/haproxy'].find((p) => existsSync(p));

/**
 * The shipped etc/haproxy.cfg.sample, pointed at three local nodes: its addresses and ports are
 * the only things changed, so the test checks the sample an operator copies.
 */
function haproxyConfig(nodes: { c2s: number; tls: number; ws: number; bosh: number; http: number }[], front: { c2s: number; tls: number; web: number }, pem: string): string {
  let config = readFileSync(path.join(ROOT, 'etc/haproxy.cfg.sample'), 'utf8')
    .replace('maxconn 100000', 'maxconn 2000')
    .replace('bind :5222', `bind 127.0.0.1:${front.c2s}`)
    .replace('bind :5223', `bind 127.0.0.1:${front.tls}`)
    .replace('bind :443 ssl crt /etc/haproxy/certs/chat.example.com.pem', `bind 127.0.0.1:${front.web} ssl crt ${pem}`);
  nodes.forEach((node, i) => {
    const host = `10.0.0.1${i + 1}`;
    config = config
      .replaceAll(`${host}:5222`, `127.0.0.1:${node.c2s}`)
      .replaceAll(`${host}:5223`, `127.0.0.1:${node.tls}`)
      .replaceAll(`${host}:5290`, `127.0.0.1:${node.ws}`)
      .replaceAll(`${host}:5280`, `127.0.0.1:${node.bosh}`)
      .split('\n')
      .map((line) => (line.includes(`server node${i + 1} `) ? line.replace('check port 8080', `check port ${node.http}`) : line))
      .join('\n');
  });
  return config;
}

/** Logs in with PLAIN over TLS from `from` (a loopback address) through the balancer's direct-TLS port; the socket stays bound. */
async function boundFrom(port: number, from: string, user: string): Promise<tls.TLSSocket> {
  // tls.connect takes socket.connect()'s options as well (Node's documentation); its types leave localAddress out.
  const socket = tls.connect({ port, host: '127.0.0.1', localAddress: from, rejectUnauthorized: false } as tls.ConnectionOptions);
  let text = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => (text += d));
  socket.on('error', () => undefined);
  const waitFor = (re: RegExp) => eventually(`${re}`, () => re.test(text), 15_000);
  socket.write(STREAM_OPEN);
  await waitFor(/<\/stream:features>/);
  socket.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${PASSWORD}`).toString('base64')}</auth>`);
  await waitFor(/<success/);
  socket.write(STREAM_OPEN);
  await waitFor(/<bind /);
  socket.write("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>proxied</resource></bind></iq>");
  await waitFor(/<jid>/);
  return socket;
}

// Real HAProxy (Debian) in front of three real nodes, configured from the shipped sample: TCP with
// the PROXY protocol, direct TLS, WebSocket and BOSH over HTTPS (sticky), and a node stopping.
t.test('three nodes behind HAProxy with the shipped sample', { skip: HAPROXY ? false : 'haproxy is not installed (Debian package haproxy)' }, async (t) => {
  const dbUri = await createClusterDatabase(t);
  if (!dbUri) return;
  const ports = await Promise.all([0, 1, 2].map(async () => ({ tls: await freePort(), ws: await freePort(), bosh: await freePort() })));
  const cluster = await startCluster(t, {
    nodes: 3, dbUri, strategy: 'online-users-caching',
    args: ['--c2s-proxy-protocol=true', '--trusted-proxies=127.0.0.1'],
    nodeArgs: (i) => [`--c2s-ssl-ports=${ports[i].tls}`, `--ws-ports=${ports[i].ws}`, `--bosh-ports=${ports[i].bosh}`],
  });
  for (const user of ['tcp', 'direct', 'web', 'bosh', 'proxied', 'later']) await cluster.addUser(user);

  const dir = mkdtempSync(path.join(os.tmpdir(), 'haproxy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { cert, key } = await loadOrCreateCertificate({ hosts: ['localhost'], dataDir: dir });
  const pem = path.join(dir, 'web.pem');
  writeFileSync(pem, `${cert.trim()}\n${key.trim()}\n`);
  const front = { c2s: await freePort(), tls: await freePort(), web: await freePort() };
  const nodes = cluster.nodes.map((n, i) => ({ c2s: n.c2sPort, tls: ports[i].tls, ws: ports[i].ws, bosh: ports[i].bosh, http: n.httpPort }));
  const config = path.join(dir, 'haproxy.cfg');
  writeFileSync(config, haproxyConfig(nodes, front, pem));
  const haproxy = spawn(HAPROXY!, ['-f', config, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let haproxyOutput = '';
  haproxy.stdout.on('data', (d) => (haproxyOutput += d));
  haproxy.stderr.on('data', (d) => (haproxyOutput += d));
  t.teardown(() => {
    haproxy.kill('SIGKILL');
  });

  const c2s = `xmpp://127.0.0.1:${front.c2s}`;
  // HAProxy is up once a login through it works.
  let tcp: Awaited<ReturnType<typeof connectClient>> | undefined;
  await eventually('a login through HAProxy', async () => {
    tcp = await connectClient({ service: c2s, domain: 'localhost', local: 'tcp', password: PASSWORD, resource: 'desk' }).catch(() => undefined);
    return tcp !== undefined;
  }, 30_000).catch((err) => {
    throw new Error(`${err}\nHAProxy said:\n${haproxyOutput}`);
  });
  if (!tcp) return;
  t.ok(tcp.jid, 'STARTTLS through HAProxy (TCP mode, PROXY protocol v2)');
  const direct = await connectClient({ service: `xmpps://127.0.0.1:${front.tls}`, domain: 'localhost', local: 'direct', password: PASSWORD });
  t.ok(direct.jid, 'direct TLS through HAProxy');
  const web = await connectClient({ service: `wss://127.0.0.1:${front.web}/xmpp-websocket`, domain: 'localhost', local: 'web', password: PASSWORD });
  t.ok(web.jid, 'WebSocket through HAProxy, TLS ended there');

  // BOSH (StanzaJS), sticky on the sid: every request of the session reaches its owner directly.
  const bosh = XMPP.createClient({
    jid: 'bosh@localhost', password: PASSWORD, resource: 'browser',
    transports: { websocket: false, bosh: `https://127.0.0.1:${front.web}/http-bind` }, useStreamManagement: false,
  });
  t.teardown(() => stanzaStop(bosh));
  await new Promise<void>((resolve, reject) => {
    bosh.once('session:started', () => resolve());
    bosh.once('auth:failed' as 'session:end', () => reject(new Error('BOSH login failed')));
    bosh.connect();
  });
  bosh.sendPresence();
  const toBosh = new Promise<string>((resolve) => bosh.on('message', (m) => m.body && resolve(m.body)));
  for (let i = 0; i < 5; i++) await tcp.send(xml('message', { to: 'bosh@localhost/browser', type: 'chat' }, xml('body', {}, `hello ${i}`)));
  t.equal(await toBosh, 'hello 0', 'BOSH through HAProxy gets messages from a TCP user');
  const fromBosh = nextStanza(tcp, (s) => s.is('message') && s.getChildText('body') === 'hi from BOSH');
  bosh.sendMessage({ to: 'tcp@localhost/desk', type: 'chat', body: 'hi from BOSH' });
  await fromBosh;
  const forwarded = await Promise.all([0, 1, 2].map(async (i) => Number((await cluster.status(i)).cluster.boshForwarded)));
  t.same(forwarded, [0, 0, 0], 'no BOSH request needed forwarding: the sample is sticky');

  // The PROXY protocol: the node sees the client's address, not HAProxy's.
  const proxied = await boundFrom(front.tls, '127.0.0.9', 'proxied');
  t.teardown(() => proxied.destroy());
  const sessions = await ctl(cluster, 0, 'sessions', 'proxied@localhost');
  t.match(sessions.out[1], /^proxied@localhost\/proxied +\S+ +tcp +127\.0\.0\.9:\d+ /, 'the session has the client\'s address');

  // A node stops: HAProxy sends new clients to the others at once (the refused connection is
  // redispatched), and users on the other nodes stay.
  await cluster.nodes[2].stop();
  for (let i = 0; i < 6; i++) {
    const later = await connectClient({ service: c2s, domain: 'localhost', local: 'later', password: PASSWORD, resource: `r${i}` });
    t.ok(later.jid, `login ${i + 1} after the stop`);
    await later.stop();
  }
  const stillThere = nextStanza(direct, (s) => s.is('message') && s.getChildText('body') === 'still there?');
  await web.send(xml('message', { to: direct.jid!.toString(), type: 'chat' }, xml('body', {}, 'still there?')));
  await stillThere;
  t.pass('messages still flow between the users of the other nodes');
  await Promise.all([tcp.stop(), direct.stop(), web.stop(), stanzaStop(bosh)]);
});
