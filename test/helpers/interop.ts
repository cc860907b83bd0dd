import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { XmppClient } from './client';
import type { TapTest } from './databases';
import type { TestDns } from './dns';
import { startDomains, type DomainServer } from './federation';
import { nextStanza, xml } from './server';
import { subscribe } from './subscriptions';
import type { TestCa } from './test-ca';

const WAIT_MS = 30_000;

/** A server we did not write, started by a test, with an account on it. */
export interface PeerServer {
  /** Its name in test titles: Prosody, ejabberd. */
  name: string;
  domain: string;
  register(local: string, password: string): Promise<void>;
  login(local: string, password: string, resource?: string): Promise<XmppClient>;
  log(): string;
}

/** Whether something accepts TCP connections on each of `ports` of `address` (a peer server that is up). */
export async function portsOpen(address: string, ports: number[]): Promise<boolean> {
  const open = (port: number) =>
    new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: address, port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
  for (const port of ports) if (!(await open(port))) return false;
  return true;
}

/**
 * What federation with another server must do, both ways: chat messages, presence subscriptions
 * and the presence that follows, and IQs between the servers. `ours` is one of our servers whose
 * domain the peer reaches (and that reaches the peer's).
 */
export async function federatesWith(t: TapTest, peer: PeerServer, ours: DomainServer): Promise<void> {
  await peer.register('petra', 'petra-password');
  await ours.addUser('oscar');
  const petra = await peer.login('petra', 'petra-password', 'laptop');
  t.teardown(() => petra.stop().catch(() => undefined));
  const oscar = await ours.login('oscar', 'phone');
  // As real clients do: a resource that fetched its roster gets subscription presences (RFC 6121 §3.1.6).
  for (const client of [petra, oscar]) await client.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:roster' })), WAIT_MS);
  // What the peer said, when something here failed.
  t.teardown(() => {
    if (!t.passing()) t.comment(peer.log().split('\n').filter((l) => /s2s|error|warn|presence|roster|dialback/i.test(l)).slice(-60).join('\n'));
  });
  const [theirs, mine] = [`petra@${peer.domain}`, `oscar@${ours.domain}`];

  await t.test(`a message from our user reaches the ${peer.name} user, and the answer comes back`, async (t) => {
    const heard = nextStanza(petra, (s) => s.is('message') && s.getChildText('body') === `hello ${peer.name}`, WAIT_MS);
    await oscar.send(xml('message', { to: theirs, type: 'chat' }, xml('body', {}, `hello ${peer.name}`)));
    t.equal((await heard).attrs.from, `${mine}/phone`);
    const back = nextStanza(oscar, (s) => s.is('message') && s.getChildText('body') === `hello from ${peer.name}`, WAIT_MS);
    await petra.send(xml('message', { to: `${mine}/phone`, type: 'chat' }, xml('body', {}, `hello from ${peer.name}`)));
    t.equal((await back).attrs.from, `${theirs}/laptop`);
  });

  await t.test('subscriptions both ways, then presence flows both ways', async (t) => {
    const petraSeen = nextStanza(oscar, (s) => s.is('presence') && s.attrs.from === `${theirs}/laptop` && !s.attrs.type, WAIT_MS);
    await subscribe(oscar, petra, WAIT_MS);
    await petraSeen;
    t.pass(`our user subscribed to the ${peer.name} user and sees her presence`);
    const oscarSeen = nextStanza(petra, (s) => s.is('presence') && s.attrs.from === `${mine}/phone` && !s.attrs.type, WAIT_MS);
    await subscribe(petra, oscar, WAIT_MS);
    await oscarSeen;
    t.pass(`the ${peer.name} user subscribed to ours and sees his presence`);
    const away = nextStanza(petra, (s) => s.is('presence') && s.attrs.from === `${mine}/phone` && s.getChildText('show') === 'away', WAIT_MS);
    await oscar.send(xml('presence', {}, xml('show', {}, 'away')));
    await away;
    t.pass(`a presence change reaches ${peer.name}`);
  });

  await t.test('IQs between the servers: ping both ways', async (t) => {
    const pong = await oscar.iqCaller.request(xml('iq', { type: 'get', to: peer.domain }, xml('ping', { xmlns: 'urn:xmpp:ping' })), WAIT_MS);
    t.equal(pong.attrs.type, 'result', `${peer.name} answers our user's ping`);
    const ours2 = await petra.iqCaller.request(xml('iq', { type: 'get', to: ours.domain }, xml('ping', { xmlns: 'urn:xmpp:ping' })), WAIT_MS);
    t.equal(ours2.attrs.type, 'result', `we answer the ${peer.name} user's ping`);
  });
}

/**
 * One of our servers for `domain`, found through `dns` (SRV records for it and its muc. and
 * pubsub. subdomains), with a certificate from `ca` for it, trusting `ca` and requiring that peers'
 * certificates prove their domains (--s2s-verify-certs): a peer gets in with SASL EXTERNAL only.
 */
export async function startNamedServer(
  t: TapTest,
  domain: string,
  dns: TestDns,
  ca: TestCa,
  opts: {
    args?: string[];
    /**
     * The SRV records' target [xmpp.<domain>, with an A record]. ejabberd looks targets up with the
     * system's getaddrinfo, which no test can point at its name server: for it, the address itself.
     */
    srvTarget?: string;
  } = {},
): Promise<DomainServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xmpp-interop-ca-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const files = ca.write(dir, await ca.issue(domain));
  const [ours] = await startDomains(t, [domain], [
    ...(opts.args ?? []),
    `--dns-servers=${dns.server}`,
    `--tls-cert=${files.cert}`,
    `--tls-key=${files.key}`,
    `--s2s-ca-file=${files.ca}`,
    '--s2s-verify-certs=true',
  ], {}, { staticRoutes: false });
  const target = opts.srvTarget ?? `xmpp.${domain}`;
  for (const name of [domain, `muc.${domain}`, `pubsub.${domain}`]) dns.srv(`_xmpp-server._tcp.${name}`, { target, port: ours.s2sPort });
  if (!opts.srvTarget) dns.a(target, '127.0.0.1');
  t.teardown(() => {
    if (!t.passing()) t.comment(`DNS questions: ${dns.asked.join(', ')}`);
  });
  return ours;
}

/** Both streams between `ours` and the peer's domain were authenticated with SASL EXTERNAL. */
export function checkExternalBothWays(t: TapTest, ours: DomainServer, peer: PeerServer): void {
  const status = ours.node.federation!.status();
  t.same(status.outgoing.filter((o) => o.remote === peer.domain).map((o) => o.auth), ['sasl-external'], `our stream to ${peer.name}: SASL EXTERNAL`);
  t.same([...new Set(status.incoming.filter((i) => i.remote === peer.domain).map((i) => i.auth))], ['sasl-external'], `${peer.name}'s stream to us: SASL EXTERNAL`);
}
