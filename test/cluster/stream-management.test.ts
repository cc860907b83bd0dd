import type { Element } from 'ltx';
import { eventually, httpGet, startCluster } from '../helpers/cluster';
import { forEachDatabase, type TapTest } from '../helpers/databases';
import { announceCaps } from '../helpers/caps';
import { Device } from '../helpers/device';
import { nextEvent, publish } from '../helpers/pubsub';
import { freePort, xml } from '../helpers/server';
import type { XmppClient } from '../helpers/client';

const WAIT_MS = 30_000;
const TUNE = 'http://jabber.org/protocol/tune';

type Sm = { enabled: boolean; id: string; on(event: string, listener: () => void): void; once(event: string, listener: () => void): void };
const smOf = (client: XmppClient) => (client as unknown as { streamManagement: Sm }).streamManagement;
const bodies = (stanzas: Element[]) => stanzas.filter((s) => s.is('message')).map((s) => s.getChildText('body'));

/** Cuts the client's connection; it reconnects, to `service`, and resumes (@xmpp/client does both by itself). */
function cutAndReconnectTo(client: XmppClient, service: string): void {
  const c = client as unknown as { options: { service: string }; reconnect: { start(): void }; socket: { socket?: { destroy(): void } } };
  c.options.service = service;
  c.reconnect.start();
  (c.socket.socket as { destroy(): void }).destroy();
}

/**
 * Three nodes; alice (stream management on) on node 1 and bob on node 3; `seen` is what alice
 * receives and `say` sends her a chat message from bob.
 */
async function aliceAndBob(t: TapTest, dbUri: string, strategy: string) {
  const cluster = await startCluster(t, { nodes: 3, dbUri, strategy });
  for (const user of ['alice', 'bob']) await cluster.addUser(user);
  const alice = await cluster.login(0, 'alice', { resource: 'phone' });
  const bob = await cluster.login(2, 'bob', { resource: 'desk' });
  await eventually('stream management enabled', () => smOf(alice).enabled, WAIT_MS);
  const seen: Element[] = [];
  alice.on('stanza', (s: Element) => seen.push(s));
  const say = (body: string) => bob.send(xml('message', { to: 'alice@localhost/phone', type: 'chat' }, xml('body', {}, body)));
  return { cluster, alice, bob, seen, say };
}

// XEP-0198 resumption on any node: a phone's connection drops and its reconnect lands on another
// node (any balancer, no stickiness). That node fetches the session from the one named in its id.
for (const strategy of ['broadcast', 'online-users-caching']) {
  forEachDatabase(`a session resumes on another node, strategy ${strategy}`, async (t, dbUri) => {
    const { cluster, alice, bob, seen, say } = await aliceAndBob(t, dbUri, strategy);
    const bobSeen: Element[] = [];
    bob.on('stanza', (s: Element) => bobSeen.push(s));
    const aliceGone = () => bobSeen.some((s) => s.is('presence') && s.attrs.from === 'alice@localhost/phone' && s.attrs.type === 'unavailable');
    // Bob sees alice through directed presence: the move must not show her leaving.
    await alice.send(xml('presence', { to: 'bob@localhost/desk' }));
    await eventually('bob sees alice', () => bobSeen.some((s) => s.is('presence') && s.attrs.from === 'alice@localhost/phone'), WAIT_MS);

    await say('before');
    await eventually('the first message arrived on node 1', () => bodies(seen).includes('before'), WAIT_MS);
    const resumed = new Promise<void>((resolve) => smOf(alice).on('resumed', resolve));
    cutAndReconnectTo(alice, `xmpp://127.0.0.1:${cluster.nodes[1].c2sPort}`);
    for (let i = 1; i <= 5; i++) await say(`during ${i}`);
    await resumed;
    t.pass('the client resumed its session on node 2');
    await eventually('every message sent during the cut arrived', () => bodies(seen).filter((b) => b?.startsWith('during')).length >= 5, WAIT_MS);
    await say('after');
    await eventually('a later message reaches the session on its new node', () => bodies(seen).includes('after'), WAIT_MS);
    t.same(bodies(seen), ['before', 'during 1', 'during 2', 'during 3', 'during 4', 'during 5', 'after'], 'each once, in order');
    t.equal(await cluster.storage.offline.count('alice@localhost'), 0, 'nothing went to offline storage');
    const pong = await alice.iqCaller.request(xml('iq', { type: 'get', to: 'bob@localhost/desk' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    t.equal(pong.attrs.type, 'result', 'the resumed session talks to the rest of the cluster');
    const metrics = await httpGet(cluster.nodes[1].httpPort, '/metrics');
    t.match(metrics.body, /xmpp_sm_resumptions_total\{outcome="resumed"[^}]*\} 1/, 'node 2 counts the resumption');
    t.notOk(aliceGone(), 'bob never saw alice leave while her session moved');
    await alice.stop();
    await eventually('when the moved session ends, bob sees alice leave (its directed presence moved with it)', aliceGone, WAIT_MS);
  }, [strategy === 'broadcast' ? 'mysql' : 'pgsql']);
}

// The node holding the session dies while its client is away: the client's resumption elsewhere
// fails cleanly, it logs in again, and what was sent to it after the death was stored offline.
forEachDatabase('the owner of a waiting session is killed: <failed/>, a new login, nothing sent meanwhile lost', async (t, dbUri) => {
  const cluster = await startCluster(t, { nodes: 3, dbUri, strategy: 'online-users-caching' });
  for (const user of ['alice', 'bob']) await cluster.addUser(user);
  const alice = await cluster.login(0, 'alice', { resource: 'phone' });
  const bob = await cluster.login(2, 'bob', { resource: 'desk' });
  await eventually('stream management enabled', () => smOf(alice).enabled, WAIT_MS);
  const oldId = smOf(alice).id;
  const online = new Promise<void>((resolve) => alice.once('online', () => resolve()));
  const c = alice as unknown as { options: { service: string }; reconnect: { start(): void }; socket: { socket: { destroy(): void } } };
  c.socket.socket.destroy();
  await eventually('the session waits on node 1', async () => (await httpGet(cluster.nodes[0].httpPort, '/metrics')).body.includes('xmpp_sm_hibernating_sessions{node="node1.cluster.test"} 1'), WAIT_MS);
  // Sent while the session waits and its node is alive: stored in the database, not in that process.
  for (let i = 1; i <= 3; i++) await bob.send(xml('message', { to: 'alice@localhost/phone', type: 'chat' }, xml('body', {}, `waiting ${i}`)));
  await eventually('stored', async () => (await cluster.storage.offline.count('alice@localhost')) === 3, WAIT_MS);
  await cluster.nodes[0].kill();
  c.options.service = `xmpp://127.0.0.1:${cluster.nodes[1].c2sPort}`;
  c.reconnect.start();
  await (alice as unknown as { reconnect: { reconnect(): Promise<void> } }).reconnect.reconnect().catch(() => undefined);
  await cluster.waitConnected(2, 2, WAIT_MS);
  for (let i = 1; i <= 5; i++) await bob.send(xml('message', { to: 'alice@localhost/phone', type: 'chat' }, xml('body', {}, `meanwhile ${i}`)));
  await online;
  t.not(smOf(alice).id, oldId, 'the resumption failed and the client bound a new session');
  const seen: Element[] = [];
  alice.on('stanza', (s: Element) => seen.push(s));
  await alice.send(xml('presence'));
  await eventually('every message sent while away arrives from offline storage', () => bodies(seen).length >= 8, WAIT_MS);
  t.same(bodies(seen), ['waiting 1', 'waiting 2', 'waiting 3', 'meanwhile 1', 'meanwhile 2', 'meanwhile 3', 'meanwhile 4', 'meanwhile 5'], 'all of them, once, in order: none died with the node');
}, ['sqlite']);

// XEP-0357 in a cluster: the node holding the waiting session tells the app server, once, wherever
// the sender and the app server are.
forEachDatabase('push: a message for a session waiting on one node notifies an app server on another, once', async (t, dbUri) => {
  const cluster = await startCluster(t, { nodes: 3, dbUri, strategy: 'online-users-caching' });
  for (const user of ['alice', 'bob', 'appserver']) await cluster.addUser(user);
  const app = await cluster.login(1, 'appserver', { resource: 'push' });
  const published: Element[] = [];
  app.on('stanza', (s: Element) => {
    if (!s.is('iq') || s.attrs.type !== 'set' || !s.getChild('pubsub')) return;
    published.push(s);
    void app.send(xml('iq', { type: 'result', id: s.attrs.id, to: s.attrs.from }));
  });
  const alice = await cluster.login(0, 'alice', { resource: 'phone' });
  await alice.iqCaller.request(xml('iq', { type: 'set' }, xml('enable', { xmlns: 'urn:xmpp:push:0', jid: 'appserver@localhost/push', node: 'n1' })));
  await eventually('stream management enabled', () => smOf(alice).enabled, WAIT_MS);
  const bob = await cluster.login(2, 'bob', { resource: 'desk' });
  (alice as unknown as { socket: { socket: { destroy(): void } } }).socket.socket.destroy();
  await eventually('the session waits on node 1', async () => (await httpGet(cluster.nodes[0].httpPort, '/metrics')).body.includes('xmpp_sm_hibernating_sessions{node="node1.cluster.test"} 1'), WAIT_MS);
  await bob.send(xml('message', { to: 'alice@localhost/phone', type: 'chat' }, xml('body', {}, 'wake up')));
  await eventually('the app server on node 2 is told', () => published.length >= 1, WAIT_MS);
  const publish = published[0].getChild('pubsub')!.getChild('publish')!;
  t.equal(publish.attrs.node, 'n1');
  t.equal(published[0].attrs.from, 'alice@localhost', 'on behalf of the account');
  // Another message, then the count: each message is told once, by the one node that holds it.
  await bob.send(xml('message', { to: 'alice@localhost/phone', type: 'chat' }, xml('body', {}, 'again')));
  await eventually('the second is told', () => published.length >= 2, WAIT_MS);
  const metrics = await Promise.all(cluster.nodes.map((node) => httpGet(node.httpPort, '/metrics')));
  const sent = metrics.map((m) => Number(/xmpp_push_notifications_total\{outcome="sent"[^}]*\} (\d+)/.exec(m.body)?.[1] ?? 0));
  // The sender's node stores the messages (the waiting session does not take them, so they survive its node) and tells.
  t.same(sent, [0, 0, 2], 'the node that stored both messages sent both notifications, no other node sent any');
  t.equal(published.length, 2);
}, ['mysql']);

// SASL2 + Bind2 + FAST (XEP-0388/0386/0484) in a cluster, with @xmpp/client's defaults: a token
// issued by one node logs in on another (tokens are in the shared database), and a session bound
// with Bind2 resumes inline, in <authenticate/>, on a third.
forEachDatabase('a FAST token issued on node 1 logs in on node 2; the session resumes inline on node 3', async (t, dbUri) => {
  const tlsPort = await freePort();
  const cluster = await startCluster(t, {
    nodes: 3, dbUri, strategy: 'online-users-caching',
    nodeArgs: (i) => (i === 1 ? [`--c2s-ssl-ports=${tlsPort}`] : []),
  });
  for (const user of ['alice', 'bob']) await cluster.addUser(user);
  const device = new Device('localhost', 'alice');
  t.teardown(() => device.stopAll());
  const first = await device.connect(`xmpp://127.0.0.1:${cluster.nodes[0].c2sPort}`);
  t.ok(device.token, 'node 1 issued a token');
  await first.stop();

  // Node 2, direct TLS, a wrong password: only the token can log this in.
  const alice = await device.connect(`xmpps://127.0.0.1:${tlsPort}`, 'not-the-password');
  const jid = alice.jid!.toString();
  t.match(jid, /^alice@localhost\/phone\//, 'logged in on node 2 with the token from node 1, bound with Bind2');
  await eventually('stream management enabled inline', () => smOf(alice).enabled, WAIT_MS);
  // Available, with caps that ask for her own tune notifications (XEP-0163), verified by node 2.
  await announceCaps(alice, [`${TUNE}+notify`]);
  const seen: Element[] = [];
  alice.on('stanza', (s: Element) => seen.push(s));
  const bob = await cluster.login(0, 'bob', { resource: 'desk' });
  const say = (body: string) => bob.send(xml('message', { to: jid, type: 'chat' }, xml('body', {}, body)));
  await say('before');
  await eventually('the first message arrived on node 2', () => bodies(seen).includes('before'), WAIT_MS);

  const resumed = new Promise<void>((resolve) => smOf(alice).on('resumed', resolve));
  cutAndReconnectTo(alice, `xmpp://127.0.0.1:${cluster.nodes[2].c2sPort}`);
  for (let i = 1; i <= 5; i++) await say(`during ${i}`);
  await resumed;
  t.equal(alice.jid!.toString(), jid, 'the same session, now on node 3');
  await eventually('every message sent during the cut arrived', () => bodies(seen).filter((b) => b?.startsWith('during')).length >= 5, WAIT_MS);
  t.same(bodies(seen), ['before', 'during 1', 'during 2', 'during 3', 'during 4', 'during 5'], 'each once, in order');
  const metrics = await httpGet(cluster.nodes[2].httpPort, '/metrics');
  t.match(metrics.body, /xmpp_sm_resumptions_total\{outcome="resumed"[^}]*\} 1/, 'node 3 resumed it');
  t.equal(await cluster.storage.offline.count('alice@localhost'), 0, 'nothing went to offline storage');
  // Node 3 never saw her presence, yet knows what her caps ask for: PEP notifications reach her there.
  const note = nextEvent(alice, TUNE, () => true, WAIT_MS);
  await publish(alice, undefined, TUNE, xml('tune', { xmlns: TUNE }, xml('title', {}, 'Resumed')));
  t.equal((await note).getChild('event')!.getChild('items')!.getChild('item')!.getChild('tune')!.getChildText('title'), 'Resumed', 'her own tune, notified on node 3');
  (alice as unknown as { reconnect: { stop(): void } }).reconnect.stop();
}, ['pgsql']);

// A session that moved (resumed on node 2) still has an id naming node 1. Node 1 restarts and
// forgets it moved; then node 2 stops. The client resumes on node 3, which asks node 1 first and,
// as node 1 no longer knows the session, the other nodes: node 2 hands it over. Nothing twice.
forEachDatabase('a moved session resumes on a third node after the node its id names restarted', async (t, dbUri) => {
  const { cluster, alice, seen, say } = await aliceAndBob(t, dbUri, 'online-users-caching');

  let resumed = new Promise<void>((resolve) => smOf(alice).once('resumed', resolve));
  cutAndReconnectTo(alice, `xmpp://127.0.0.1:${cluster.nodes[1].c2sPort}`);
  await resumed;
  await say('on node 2');
  await eventually('a message reaches the session on node 2', () => bodies(seen).includes('on node 2'), WAIT_MS);

  t.equal(await cluster.nodes[0].stop(), 0, 'node 1 stops');
  await cluster.nodes[0].start();
  for (let i = 0; i < 3; i++) await cluster.waitConnected(i, 3, WAIT_MS);

  // Node 2 stops: its clients are told so and reconnect; alice's lands on node 3.
  resumed = new Promise<void>((resolve) => smOf(alice).once('resumed', resolve));
  const c = alice as unknown as { options: { service: string }; reconnect: { start(): void } };
  c.options.service = `xmpp://127.0.0.1:${cluster.nodes[2].c2sPort}`;
  c.reconnect.start();
  const stopped = cluster.nodes[1].stop();
  for (let i = 1; i <= 3; i++) await say(`while moving ${i}`);
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([resumed.then(() => 'resumed'), new Promise<string>((resolve) => (timer = setTimeout(() => resolve('no <resumed/>'), WAIT_MS)))]);
  clearTimeout(timer);
  t.equal(outcome, 'resumed', 'the client resumed its session on node 3');
  t.equal(await stopped, 0, 'node 2 stopped cleanly');
  await say('on node 3');
  await eventually('every message arrived', () => bodies(seen).includes('on node 3') && bodies(seen).filter((b) => b?.startsWith('while moving')).length >= 3, WAIT_MS);
  t.same(bodies(seen), ['on node 2', 'while moving 1', 'while moving 2', 'while moving 3', 'on node 3'], 'each once, in order');
  t.match(cluster.nodes[2].output, /session resumed from another node jid=alice@localhost\/phone peer=node2\.cluster\.test/, 'node 3 took it from node 2');
}, ['sqlite']);
