import t from 'tap';
import { client as xmppClient } from '@xmpp/client';
import type { Element } from 'ltx';
import { deriveScramCredentials } from '../../server/c2s/sasl/scram';
import { collect, nextStanza, PASSWORD, sleep, startTestServer, xml, type XmppClient } from '../helpers/server';
import { subscribe } from '../helpers/subscriptions';
import { CLIENT_TIMEOUT_MS, withoutSasl2 } from '../helpers/client';

const BLOCKING = 'urn:xmpp:blocking';
const BLOCKING_ERRORS = 'urn:xmpp:blocking:errors';
/** How long we wait to be sure that something did NOT arrive. */
const QUIET_MS = 300;

const items = (...jids: string[]) => jids.map((jid) => xml('item', { jid }));

async function blocklist(client: XmppClient): Promise<string[]> {
  const result = await client.iqCaller.request(xml('iq', { type: 'get' }, xml('blocklist', { xmlns: BLOCKING })));
  const list = result.getChild('blocklist', BLOCKING);
  if (!list) throw new Error('no <blocklist/> in the result');
  return list.getChildren('item').map((i: Element) => i.attrs.jid as string);
}

const block = (client: XmppClient, ...jids: string[]) =>
  client.iqCaller.request(xml('iq', { type: 'set' }, xml('block', { xmlns: BLOCKING }, ...items(...jids))));
const unblock = (client: XmppClient, ...jids: string[]) =>
  client.iqCaller.request(xml('iq', { type: 'set' }, xml('unblock', { xmlns: BLOCKING }, ...items(...jids))));

const chat = (to: string, body: string, id?: string) => xml('message', id ? { to, type: 'chat', id } : { to, type: 'chat' }, xml('body', {}, body));
const isChat = (body: string) => (s: Element) => s.is('message') && s.attrs.type !== 'error' && s.getChildText('body') === body;
const isErrorFor = (id: string) => (s: Element) => s.is('message') && s.attrs.type === 'error' && s.attrs.id === id;
const isPush = (name: 'block' | 'unblock') => (s: Element) => s.is('iq') && s.attrs.type === 'set' && !!s.getChild(name, BLOCKING);

t.test('blocking command (XEP-0191)', async (t) => {
  const server = await startTestServer(t, { args: ['--virt-hosts=localhost,example.org'] });
  for (const user of ['alice', 'bob', 'dave']) await server.addUser(user);
  await server.node.storage.users.create('carol@example.org', deriveScramCredentials(PASSWORD, 4096));

  /** The test helper logs in on localhost only; carol lives on the second virtual host. */
  const started: XmppClient[] = [];
  t.teardown(() => Promise.all(started.map((c) => c.stop().catch(() => undefined))));
  async function loginCarol(): Promise<XmppClient> {
    const carol = xmppClient({
      service: `xmpp://127.0.0.1:${server.port}`,
      domain: 'example.org',
      resource: 'home',
      timeout: CLIENT_TIMEOUT_MS,
      credentials: async (authenticate: (c: object, m: string) => Promise<void>) => authenticate({ username: 'carol', password: PASSWORD }, 'SCRAM-SHA-1'),
    });
    withoutSasl2(carol);
    carol.on('error', () => undefined);
    started.push(carol);
    await carol.start();
    await carol.send(xml('presence'));
    return carol;
  }

  const alice = await server.login('alice', { resource: 'desk' });
  const alicePhone = await server.login('alice', { resource: 'phone' });
  const bob = await server.login('bob', { resource: 'laptop' });

  await t.test('the block list starts empty', async (t) => {
    t.same(await blocklist(alice), []);
  });

  await t.test('a block is pushed to the other resource that asked for the list', async (t) => {
    t.same(await blocklist(alicePhone), [], 'the phone asks for the list, so it gets pushes');
    const push = nextStanza(alicePhone, isPush('block'));
    const result = await block(alice, 'bob@localhost');
    t.equal(result.attrs.type, 'result');
    const got = await push;
    t.same(got.getChild('block', BLOCKING)!.getChildren('item').map((i) => i.attrs.jid), ['bob@localhost']);
    t.equal(got.attrs.to, 'alice@localhost/phone');
    t.same(await blocklist(alice), ['bob@localhost'], 'the list holds bob');
  });

  await t.test('a block without items is bad-request', async (t) => {
    await t.rejects(block(alice), { name: 'StanzaError', condition: 'bad-request' });
  });

  await t.test("the blocked contact's messages bounce with service-unavailable and are not delivered", async (t) => {
    const seen = collect(alice);
    const bounced = nextStanza(bob, isErrorFor('b1'));
    await bob.send(chat('alice@localhost', 'let me in', 'b1'));
    const error = await bounced;
    t.ok(error.getChild('error')?.getChild('service-unavailable'), 'service-unavailable');
    t.equal(error.attrs.from, 'alice@localhost');
    const toFull = nextStanza(bob, isErrorFor('b2'));
    await bob.send(chat('alice@localhost/desk', 'knock knock', 'b2'));
    t.ok((await toFull).getChild('error')?.getChild('service-unavailable'), 'also to a full JID');
    await t.rejects(
      bob.iqCaller.request(xml('iq', { type: 'get', to: 'alice@localhost/desk' }, xml('ping', { xmlns: 'urn:xmpp:ping' }))),
      { name: 'StanzaError', condition: 'service-unavailable' },
      'IQs to the user bounce too',
    );
    await sleep(QUIET_MS);
    t.equal(seen.filter((s) => s.is('message') || s.is('iq')).length, 0, 'alice got nothing from bob');
  });

  await t.test('the user sending to the blocked contact gets not-acceptable with <blocked/>', async (t) => {
    const bobSeen = collect(bob);
    const refused = nextStanza(alice, isErrorFor('a1'));
    await alice.send(chat('bob@localhost', 'psst', 'a1'));
    const error = (await refused).getChild('error')!;
    t.ok(error.getChild('not-acceptable'), 'not-acceptable');
    t.ok(error.getChild('blocked', BLOCKING_ERRORS), "<blocked xmlns='urn:xmpp:blocking:errors'/>");
    await sleep(QUIET_MS);
    t.equal(bobSeen.filter((s) => s.is('message')).length, 0, 'bob got nothing');
  });

  await t.test('unblocking one contact lets its messages through again', async (t) => {
    const push = nextStanza(alicePhone, isPush('unblock'));
    await unblock(alice, 'bob@localhost');
    t.same((await push).getChild('unblock', BLOCKING)!.getChildren('item').map((i) => i.attrs.jid), ['bob@localhost'], 'unblock push');
    t.same(await blocklist(alice), []);
    const arrives = nextStanza(alice, isChat('hello again'));
    await bob.send(chat('alice@localhost/desk', 'hello again'));
    await arrives;
    t.pass('bob reaches alice');
  });

  await t.test('a blocked subscriber gets unavailable at block time, then no presence; unblock shows it again', async (t) => {
    const dave = await server.login('dave', { resource: 'pc' });
    await subscribe(dave, alice);
    const daveSeen = collect(dave);

    const goneDesk = nextStanza(dave, (s) => s.is('presence') && s.attrs.type === 'unavailable' && s.attrs.from === 'alice@localhost/desk');
    const gonePhone = nextStanza(dave, (s) => s.is('presence') && s.attrs.type === 'unavailable' && s.attrs.from === 'alice@localhost/phone');
    await block(alice, 'dave@localhost');
    await Promise.all([goneDesk, gonePhone]);
    t.pass('dave sees both of alice\'s resources go unavailable');

    const before = daveSeen.length;
    await alice.send(xml('presence', {}, xml('show', {}, 'away')));
    const tablet = await server.login('alice', { resource: 'tablet' });
    await sleep(QUIET_MS);
    const leaked = daveSeen.slice(before).filter((s) => s.is('presence') && s.attrs.type !== 'unavailable');
    t.same(leaked.map((s) => s.attrs.from), [], 'no presence of alice reaches dave while blocked');

    const daveAgain = await server.login('dave', { resource: 'tablet' });
    const probed = collect(daveAgain);
    await sleep(QUIET_MS);
    t.equal(probed.filter((s) => s.is('presence') && s.attrs.from?.startsWith('alice@')).filter((s) => s.attrs.type !== 'unavailable').length, 0, "dave's probe on login reveals nothing");
    await daveAgain.stop();

    // XEP-0191 §3.4: "...MUST send the user's current presence information to the contact".
    const back = nextStanza(dave, (s) => s.is('presence') && s.attrs.type === undefined && s.attrs.from === 'alice@localhost/desk');
    await unblock(alice, 'dave@localhost');
    t.equal((await back).getChildText('show'), 'away', "after the unblock dave sees alice's current presence");
    await Promise.all([tablet.stop(), dave.stop()]);
  });

  await t.test('a stranger is not told anything when blocked', async (t) => {
    const stranger = await server.login('bob', { resource: 'stranger' });
    const seen = collect(stranger);
    await block(alice, 'bob@localhost');
    await sleep(QUIET_MS);
    t.same(seen.filter((s) => s.is('presence') && s.attrs.from?.startsWith('alice@')).map((s) => s.toString()), [], 'no unavailable presence to someone without a subscription');
    await unblock(alice, 'bob@localhost');
    await stranger.stop();
  });

  await t.test('a domain block covers every user of that domain', async (t) => {
    const carol = await loginCarol();
    await block(alice, 'example.org');
    const bounced = nextStanza(carol, isErrorFor('c1'));
    await carol.send(chat('alice@localhost', 'from afar', 'c1'));
    t.ok((await bounced).getChild('error')?.getChild('service-unavailable'), "carol@example.org's message bounces");
    const refused = nextStanza(alice, isErrorFor('a2'));
    await alice.send(chat('carol@example.org', 'hi carol', 'a2'));
    t.ok((await refused).getChild('error')?.getChild('blocked', BLOCKING_ERRORS), 'alice cannot write to carol@example.org');
    const sub = nextStanza(alice, isErrorFor('a3'));
    await alice.send(chat('someone@chat.example.org', 'hello?', 'a3'));
    t.ok((await sub).getChild('error')?.getChild('blocked', BLOCKING_ERRORS), 'nor to an address in a subdomain (XEP-0191 §4)');
    const fromBob = nextStanza(alice, isChat('still here'));
    await bob.send(chat('alice@localhost/desk', 'still here'));
    await fromBob;
    t.pass('users of other domains are not affected');
  });

  await t.test('unblock without items unblocks everyone', async (t) => {
    await block(alice, 'dave@localhost', 'mallory@localhost');
    t.same(await blocklist(alice), ['dave@localhost', 'example.org', 'mallory@localhost']);
    const push = nextStanza(alicePhone, isPush('unblock'));
    await alice.iqCaller.request(xml('iq', { type: 'set' }, xml('unblock', { xmlns: BLOCKING })));
    t.same((await push).getChild('unblock', BLOCKING)!.getChildren('item'), [], 'the push is an empty unblock');
    t.same(await blocklist(alice), []);
    const carol = started[started.length - 1];
    const arrives = nextStanza(alice, isChat('can you hear me'));
    await carol.send(chat('alice@localhost/desk', 'can you hear me'));
    await arrives;
    t.pass('carol gets through again');
  });

  await t.test('a block is stored: it survives logging out and in again', async (t) => {
    await block(alice, 'bob@localhost');
    await Promise.all([alice.stop(), alicePhone.stop(), server.login('alice', { resource: 'spare', presence: false }).then((c) => c.stop())]);
    const again = await server.login('alice', { resource: 'again' });
    t.same(await blocklist(again), ['bob@localhost'], 'the list comes back from storage');
    const bounced = nextStanza(bob, isErrorFor('b3'));
    await bob.send(chat('alice@localhost', 'remember me?', 'b3'));
    t.ok((await bounced).getChild('error')?.getChild('service-unavailable'), 'and is enforced');
    await unblock(again, 'bob@localhost');
  });
});
