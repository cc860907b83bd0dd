import t from 'tap';
import type { Element } from 'ltx';
import { eventually } from '../helpers/cluster';
import { parseJID } from '../../server/jid';
import { collect, rawLogin, startTestServer, xml, type XmppClient } from '../helpers/server';

const SM = 'urn:xmpp:sm:3';
/** Generous: the suite runs on small, busy machines. */
const WAIT_MS = 20_000;

type Sm = { enabled: boolean; id: string; on(event: string, listener: () => void): void };
const smOf = (client: XmppClient) => (client as unknown as { streamManagement: Sm }).streamManagement;
/** The client's network socket (under STARTTLS, the TLS socket inside xmpp.js's wrapper): destroying it cuts the connection. */
const socketOf = (client: XmppClient) => {
  const wrapper = (client as unknown as { socket: { socket?: { destroy(): void }; destroy?(): void } }).socket;
  return (wrapper.socket ?? wrapper) as { destroy(): void };
};
const bodies = (stanzas: Element[]) => stanzas.filter((s) => s.is('message')).map((s) => s.getChildText('body'));

// @xmpp/client enables XEP-0198 with resumption by itself when the server offers it, and after a
// lost connection reconnects and resumes: these tests drive that real client.
t.test('XEP-0198 on one node', async (t) => {
  const server = await startTestServer(t, { args: ['--sm-resume-timeout=3'] });
  for (const user of ['alice', 'bob', 'carol', 'dave']) await server.addUser(user);

  await t.test('stream management is offered after authentication and enabled with resumption', async (t) => {
    const alice = await server.login('alice', { resource: 'phone' });
    await eventually('stream management enabled', () => smOf(alice).enabled, WAIT_MS);
    t.ok(smOf(alice).id, 'the server gave a resumption id');
    const answers: number[] = [];
    alice.on('nonza', (el: Element) => { if (el.is('a', SM)) answers.push(Number(el.attrs.h)); });
    await alice.send(xml('r', { xmlns: SM }));
    await eventually('an acknowledgement', () => answers.length >= 1, WAIT_MS);
    const before = answers[answers.length - 1];
    await alice.send(xml('iq', { type: 'get', id: 'p1' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    await alice.send(xml('message', { to: 'bob@localhost', type: 'chat' }, xml('body', {}, 'counted')));
    await alice.send(xml('r', { xmlns: SM }));
    await eventually('an acknowledgement of two more stanzas', () => answers[answers.length - 1] >= before + 2, WAIT_MS);
    t.equal(answers[answers.length - 1], before + 2, 'the server counts each stanza it handled, nothing more');
    await alice.stop();
  });

  await t.test('a connection cut: messages sent meanwhile arrive after <resumed/>, none twice, none lost', async (t) => {
    const alice = await server.login('alice', { resource: 'phone' });
    const bob = await server.login('bob');
    await eventually('stream management enabled', () => smOf(alice).enabled, WAIT_MS);
    const seen = collect(alice);
    const resumed = new Promise<void>((resolve) => smOf(alice).on('resumed', resolve));
    await bob.send(xml('message', { to: 'alice@localhost/phone', type: 'chat' }, xml('body', {}, 'before')));
    await eventually('the first message arrived', () => bodies(seen).includes('before'), WAIT_MS);
    socketOf(alice).destroy();
    for (let i = 1; i <= 5; i++) await bob.send(xml('message', { to: 'alice@localhost/phone', type: 'chat' }, xml('body', {}, `during ${i}`)));
    await resumed;
    t.pass('the client resumed its session');
    await eventually('every message sent during the cut arrived', () => bodies(seen).filter((b) => b?.startsWith('during')).length >= 5, WAIT_MS);
    await bob.send(xml('message', { to: 'alice@localhost/phone', type: 'chat' }, xml('body', {}, 'after')));
    await eventually('and a later one', () => bodies(seen).includes('after'), WAIT_MS);
    t.same(bodies(seen), ['before', 'during 1', 'during 2', 'during 3', 'during 4', 'during 5', 'after'], 'each once, in order');
    t.equal(await server.node.storage.offline.count('alice@localhost'), 0, 'nothing went to offline storage');
    t.ok(server.node.streamManagement.counters.resumed >= 1);
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('a session not resumed in time: what it had not acknowledged goes to offline storage', async (t) => {
    const carol = await server.login('carol', { resource: 'laptop' });
    const bob = await server.login('bob');
    await eventually('stream management enabled', () => smOf(carol).enabled, WAIT_MS);
    (carol as unknown as { reconnect: { stop(): void } }).reconnect.stop();
    socketOf(carol).destroy();
    for (let i = 1; i <= 3; i++) await bob.send(xml('message', { to: 'carol@localhost/laptop', type: 'chat' }, xml('body', {}, `while away ${i}`)));
    await eventually('messages for the waiting session are stored as they come', async () => (await server.node.storage.offline.count('carol@localhost')) === 3, WAIT_MS);
    await eventually('the session expires', () => server.node.streamManagement.counters.expired >= 1, WAIT_MS);
    t.equal(await server.node.storage.offline.count('carol@localhost'), 3, 'each stored once');
    const again = await server.login('carol', { resource: 'laptop', presence: false });
    const seen = collect(again);
    await again.send(xml('presence'));
    await eventually('the stored messages arrive at the next login', () => bodies(seen).length === 3, WAIT_MS);
    t.same(bodies(seen), ['while away 1', 'while away 2', 'while away 3']);
    await Promise.all([again.stop(), bob.stop()]);
  });

  await t.test('resuming an unknown or expired session fails cleanly and the client binds anew', async (t) => {
    const dave = await server.login('dave', { resource: 'tab' });
    await eventually('stream management enabled', () => smOf(dave).enabled, WAIT_MS);
    const failedBefore = server.node.streamManagement.counters.failedResumptions;
    smOf(dave).id = 'no-such-session';
    const online = new Promise<void>((resolve) => dave.once('online', () => resolve()));
    socketOf(dave).destroy();
    await online;
    t.equal(server.node.streamManagement.counters.failedResumptions, failedBefore + 1, '<failed/> for the unknown id');
    const pong = await dave.iqCaller.request(xml('iq', { type: 'get' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    t.equal(pong.attrs.type, 'result', 'the new session works');
    await dave.stop();
  });

  await t.test('an acknowledgement of more than was sent ends the stream', async (t) => {
    const alice = await server.login('alice', { resource: 'liar' });
    await eventually('stream management enabled', () => smOf(alice).enabled, WAIT_MS);
    (alice as unknown as { reconnect: { stop(): void } }).reconnect.stop();
    const error = new Promise<Error & { condition?: string }>((resolve) => alice.on('error', resolve));
    await alice.send(xml('a', { xmlns: SM, h: '100000' }));
    t.equal((await error).condition, 'undefined-condition');
    const bob = await server.login('bob');
    // The session ended (not hibernated): a message to it goes to the bare JID, i.e. offline.
    await bob.send(xml('message', { to: 'alice@localhost/liar', type: 'chat' }, xml('body', {}, 'to the liar')));
    await eventually('stored offline', async () => (await server.node.storage.offline.count('alice@localhost')) >= 1, WAIT_MS);
    await bob.stop();
  });
});

t.test('--sm-max-unacked: a client that never acknowledges is closed with policy-violation; what it held goes to offline storage', async (t) => {
  const server = await startTestServer(t, { args: ['--sm-max-unacked=10'] });
  await server.addUser('deaf');
  await server.addUser('talker');
  // It enables stream management and reads everything, but never sends <a/>.
  const deaf = await rawLogin(server.tlsPort, 'deaf', 'r', "<enable xmlns='urn:xmpp:sm:3'/><presence/>", /<enabled/);
  const talker = await server.login('talker');
  const ids = Array.from({ length: 15 }, (_, i) => `u${i}`);
  for (const id of ids) await talker.send(xml('message', { to: 'deaf@localhost', type: 'chat', id }, xml('body', {}, id)));
  await deaf.waitFor(/<policy-violation[^]*<\/stream:stream>/, 30_000);
  t.match(deaf.text, /more than 10 stanzas unacknowledged/, 'the error says why');
  await eventually('the session is gone', () => !server.node.sessions.hasSessions('deaf@localhost'), 30_000);
  const back = await server.login('deaf', { resource: 'again' });
  const got: string[] = [];
  back.on('stanza', (s: Element) => {
    if (s.is('message') && ids.includes(s.attrs.id)) got.push(s.attrs.id);
  });
  await eventually('all 15 messages arrive from offline storage', () => got.length >= ids.length, 30_000);
  t.same([...got].sort(), [...ids].sort(), 'all 15, once each: those it never acknowledged too');
});

t.test('a clean close ends a stream-managed session at once: nothing waits to be resumed', async (t) => {
  const server = await startTestServer(t);
  await server.addUser('erin');
  await server.addUser('frank');
  const erin = await server.login('erin', { resource: 'old' });
  await eventually('stream management enabled', () => smOf(erin).enabled, WAIT_MS);
  await erin.stop();
  await eventually('no session left', () => server.node.sessions.count === 0, WAIT_MS);
  t.equal(server.node.streamManagement.hibernating, 0, 'nothing hibernates');
  const frank = await server.login('frank');
  await frank.send(xml('message', { to: 'erin@localhost/old', type: 'chat' }, xml('body', {}, 'gone?')));
  await eventually('a message to the old resource is stored offline', async () => (await server.node.storage.offline.count('erin@localhost')) === 1, WAIT_MS);
  await frank.stop();
});

t.test('XEP-0352: an inactive client gets presence later and chat messages at once', async (t) => {
  const server = await startTestServer(t);
  for (const user of ['gina', 'hank']) await server.addUser(user);
  const gina = await server.login('gina', { resource: 'phone' });
  const hank = await server.login('hank', { resource: 'desk' });
  const seen = collect(gina);
  const sink = () => server.node.sessions.get(parseJID('gina@localhost/phone'))!.sink as unknown as { held: Element[] };
  await gina.send(xml('inactive', { xmlns: 'urn:xmpp:csi:0' }));
  // Directed presence and a chat state can wait; the latest presence from hank replaces the older one.
  await hank.send(xml('presence', { to: 'gina@localhost/phone' }, xml('show', {}, 'away')));
  await hank.send(xml('presence', { to: 'gina@localhost/phone' }, xml('show', {}, 'dnd')));
  await hank.send(xml('message', { to: 'gina@localhost/phone', type: 'chat' }, xml('composing', { xmlns: 'http://jabber.org/protocol/chatstates' })));
  await eventually('held on the server', () => sink().held.length === 2, WAIT_MS);
  t.equal(seen.filter((s) => s.attrs.from === 'hank@localhost/desk').length, 0, 'nothing from hank reached the inactive client yet');
  await hank.send(xml('message', { to: 'gina@localhost/phone', type: 'chat' }, xml('body', {}, 'read this now')));
  await eventually('the chat message arrives', () => bodies(seen).includes('read this now'), WAIT_MS);
  const fromHank = seen.filter((s) => s.attrs.from === 'hank@localhost/desk');
  t.same(fromHank.map((s) => s.getChildText('show') ?? s.getChildText('body') ?? s.getChildElements()[0]?.name), ['dnd', 'composing', 'read this now'],
    'what was held goes first, in order, only the latest presence');
  t.equal(sink().held.length, 0);
  await gina.send(xml('inactive', { xmlns: 'urn:xmpp:csi:0' }));
  await hank.send(xml('presence', { to: 'gina@localhost/phone' }, xml('show', {}, 'chat')));
  await eventually('held again', () => sink().held.length === 1, WAIT_MS);
  await gina.send(xml('active', { xmlns: 'urn:xmpp:csi:0' }));
  await eventually('becoming active sends it', () => seen.some((s) => s.is('presence') && s.getChildText('show') === 'chat'), WAIT_MS);
  await Promise.all([gina.stop(), hank.stop()]);
});
