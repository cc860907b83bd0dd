import t from 'tap';
import {
  MUC_ARGS,
  configure,
  createRoom,
  discoInfo,
  errorOf,
  join,
  joinError,
  leave,
  mucItem,
  presenceOf,
  statusCodes,
} from '../../helpers/muc';
import { loadConfig } from '../../../server/config/config';
import { readMucOptions } from '../../../components/muc/options';
import { collect, nextStanza, sleep, startTestServer, xml } from '../../helpers/server';

t.test('entering and leaving rooms', async (t) => {
  const server = await startTestServer(t, { args: MUC_ARGS });
  for (const user of ['alice', 'bob', 'carol']) await server.addUser(user);

  await t.test('the creator of a new room gets status 201 and 110, becomes owner and moderator, and the room is locked until configured', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    const joined = await join(alice, 'lobby@muc.localhost/Alice');
    t.same(statusCodes(joined.self), [110, 201]);
    t.equal(joined.self.attrs.from, 'lobby@muc.localhost/Alice');
    t.match(mucItem(joined.self)?.attrs, { affiliation: 'owner', role: 'moderator', jid: 'alice@localhost/a' });
    t.equal(joined.subject.getChildText('subject'), '', 'an empty subject comes last');
    t.equal(await joinError(bob, 'lobby@muc.localhost/Bob'), 'item-not-found', 'others cannot enter a locked room');
    await configure(alice, 'lobby@muc.localhost');
    const bobIn = await join(bob, 'lobby@muc.localhost/Bob');
    t.same(statusCodes(bobIn.self), [110], 'after the instant-room form, others may enter');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('a newcomer gets the occupants\' presence before its own, and everyone sees it arrive', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    const carol = await server.login('carol', { resource: 'c' });
    await createRoom(alice, 'tea@muc.localhost/Alice');
    await join(bob, 'tea@muc.localhost/Bob', { status: 'brewing' });
    const aliceSeesCarol = presenceOf(alice, 'tea@muc.localhost/Carol');
    const bobSeesCarol = presenceOf(bob, 'tea@muc.localhost/Carol');
    const joined = await join(carol, 'tea@muc.localhost/Carol');
    t.same(joined.presences.map((p) => p.attrs.from).sort(), ['tea@muc.localhost/Alice', 'tea@muc.localhost/Bob']);
    const bobAsSeen = joined.presences.find((p) => p.attrs.from === 'tea@muc.localhost/Bob')!;
    t.equal(bobAsSeen.getChildText('status'), 'brewing', 'with their status text');
    t.match(mucItem(bobAsSeen)?.attrs, { affiliation: 'none', role: 'participant' });
    t.notOk(mucItem(bobAsSeen)?.attrs.jid, 'a semi-anonymous room hides real JIDs from participants');
    const asAliceSeesIt = await aliceSeesCarol;
    t.equal(mucItem(asAliceSeesIt)?.attrs.jid, 'carol@localhost/c', 'the moderator sees the real JID');
    t.notOk(mucItem(await bobSeesCarol)?.attrs.jid);
    t.same(statusCodes(asAliceSeesIt), [], 'others get no 110');

    const bobSeesLeave = presenceOf(bob, 'tea@muc.localhost/Carol', 'unavailable');
    const gone = await leave(carol, 'tea@muc.localhost/Carol', 'bye now');
    t.same(statusCodes(gone), [110], 'the leaver gets its own unavailable presence with 110');
    const seen = await bobSeesLeave;
    t.equal(mucItem(seen)?.attrs.role, 'none');
    t.equal(seen.getChildText('status'), 'bye now', 'others see the exit with its status text');
    await Promise.all([alice.stop(), bob.stop(), carol.stop()]);
  });

  await t.test('a non-anonymous room says so with status 100 and shows real JIDs to everyone', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'open@muc.localhost/Alice', { 'muc#roomconfig_whois': 'anyone' });
    const joined = await join(bob, 'open@muc.localhost/Bob');
    t.same(statusCodes(joined.self), [100, 110]);
    t.equal(mucItem(joined.presences[0])?.attrs.jid, 'alice@localhost/a');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('a nickname held by someone else is a conflict; a missing nickname is jid-malformed', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'names@muc.localhost/Alice');
    t.equal(await joinError(bob, 'names@muc.localhost/Alice'), 'conflict');
    const refused = nextStanza(bob, (s) => s.is('presence') && s.attrs.type === 'error' && s.attrs.from === 'names@muc.localhost');
    await bob.send(xml('presence', { to: 'names@muc.localhost' }, xml('x', { xmlns: 'http://jabber.org/protocol/muc' })));
    t.equal((await refused).getChild('error')?.getChildElements()[0]?.name, 'jid-malformed');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('a nickname the server normalises comes back with status 210', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    await createRoom(alice, 'norm@muc.localhost/Alice');
    const bob = await server.login('bob', { resource: 'b' });
    // U+2126 OHM SIGN is mapped to U+03A9 by the OpaqueString profile (NFC).
    const joined = await join(bob, 'norm@muc.localhost/\u2126hm');
    t.same(statusCodes(joined.self), [110, 210]);
    t.equal(joined.self.attrs.from, 'norm@muc.localhost/\u03A9hm');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('changing nickname: everyone sees 303 with the new nick, then the new presence', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'nicks@muc.localhost/Alice');
    await join(bob, 'nicks@muc.localhost/Bob');
    const aliceSeesOld = presenceOf(alice, 'nicks@muc.localhost/Bob', 'unavailable');
    const aliceSeesNew = presenceOf(alice, 'nicks@muc.localhost/Robert');
    const bobSelfOld = presenceOf(bob, 'nicks@muc.localhost/Bob', 'unavailable');
    const bobSelfNew = presenceOf(bob, 'nicks@muc.localhost/Robert');
    await bob.send(xml('presence', { to: 'nicks@muc.localhost/Robert' }));
    const old = await aliceSeesOld;
    t.same(statusCodes(old), [303]);
    t.equal(mucItem(old)?.attrs.nick, 'Robert');
    t.equal(mucItem(old)?.attrs.role, 'participant', 'the role is kept through the change');
    await aliceSeesNew;
    t.same(statusCodes(await bobSelfOld), [110, 303]);
    t.same(statusCodes(await bobSelfNew), [110]);
    const conflict = nextStanza(bob, (s) => s.is('presence') && s.attrs.type === 'error');
    await bob.send(xml('presence', { to: 'nicks@muc.localhost/Alice' }));
    t.equal((await conflict).getChild('error')?.getChildElements()[0]?.name, 'conflict', 'changing to a taken nick is a conflict');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('a new availability status is broadcast to the room', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'status@muc.localhost/Alice');
    await join(bob, 'status@muc.localhost/Bob');
    const seen = nextStanza(alice, (s) => s.is('presence') && s.attrs.from === 'status@muc.localhost/Bob' && s.getChild('show') !== undefined);
    await bob.send(xml('presence', { to: 'status@muc.localhost/Bob' }, xml('show', {}, 'away'), xml('status', {}, 'lunch')));
    const update = await seen;
    t.equal(update.getChildText('show'), 'away');
    t.equal(update.getChildText('status'), 'lunch');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('two resources of one user may share a nick; the others see one occupant', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bobPhone = await server.login('bob', { resource: 'phone' });
    const bobDesk = await server.login('bob', { resource: 'desk' });
    await createRoom(alice, 'multi@muc.localhost/Alice');
    await join(bobPhone, 'multi@muc.localhost/Bob');
    const aliceSeen = collect(alice);
    const second = await join(bobDesk, 'multi@muc.localhost/Bob');
    t.same(statusCodes(second.self), [110]);
    const phoneHears = nextStanza(bobPhone, (s) => s.is('message') && s.getChildText('body') === 'both of you');
    const deskHears = nextStanza(bobDesk, (s) => s.is('message') && s.getChildText('body') === 'both of you');
    await alice.send(xml('message', { to: 'multi@muc.localhost', type: 'groupchat' }, xml('body', {}, 'both of you')));
    await Promise.all([phoneHears, deskHears]);
    t.pass('a groupchat message reaches both sessions');
    await leave(bobDesk, 'multi@muc.localhost/Bob');
    await sleep(200);
    t.equal(aliceSeen.filter((s) => s.is('presence') && s.attrs.from === 'multi@muc.localhost/Bob' && s.attrs.type === 'unavailable').length, 0, 'one session leaving does not take Bob out');
    const gone = presenceOf(alice, 'multi@muc.localhost/Bob', 'unavailable');
    await leave(bobPhone, 'multi@muc.localhost/Bob');
    await gone;
    t.pass('the last session leaving does');
    await Promise.all([alice.stop(), bobPhone.stop(), bobDesk.stop()]);
  });

  await t.test('joining again while still in the room (a client that lost track) gets the whole entry again', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'again@muc.localhost/Alice');
    await join(bob, 'again@muc.localhost/Bob');
    // The message and the second join travel on two connections: the room has the message in its history once bob has it.
    const live = nextStanza(bob, (s) => s.is('message') && s.getChildText('body') === 'remember me');
    await alice.send(xml('message', { to: 'again@muc.localhost', type: 'groupchat' }, xml('body', {}, 'remember me')));
    await live;
    const aliceSeen = collect(alice);
    const rejoined = await join(bob, 'again@muc.localhost/Bob');
    t.same(statusCodes(rejoined.self), [110]);
    t.same(rejoined.presences.map((p) => p.attrs.from), ['again@muc.localhost/Alice']);
    t.same(rejoined.history.map((m) => m.getChildText('body')), ['remember me']);
    await sleep(100);
    t.equal(aliceSeen.filter((s) => s.is('presence') && s.attrs.type === 'unavailable').length, 0, 'the others see no exit');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('an occupant can ask whether it is still in the room (XEP-0410 self-ping)', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'ping@muc.localhost/Alice');
    const ping = (client: typeof alice, to: string) => client.iqCaller.request(xml('iq', { type: 'get', to }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    const pong = await ping(alice, 'ping@muc.localhost/Alice');
    t.equal(pong.attrs.type, 'result', 'joined: a result');
    t.equal(await errorOf(ping(bob, 'ping@muc.localhost/Alice')), 'not-acceptable', 'not that occupant: not-acceptable');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('a client that disconnects leaves every room it was in', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'drop@muc.localhost/Alice');
    await join(bob, 'drop@muc.localhost/Bob');
    const gone = presenceOf(alice, 'drop@muc.localhost/Bob', 'unavailable');
    await bob.stop();
    t.equal(mucItem(await gone)?.attrs.role, 'none');
    await alice.stop();
  });

  await t.test('a temporary room is destroyed when its last occupant leaves', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    await createRoom(alice, 'brief@muc.localhost/Alice');
    await discoInfo(alice, 'brief@muc.localhost');
    await leave(alice, 'brief@muc.localhost/Alice');
    t.equal(await errorOf(discoInfo(alice, 'brief@muc.localhost')), 'item-not-found');
    const again = await join(alice, 'brief@muc.localhost/Alice');
    t.ok(statusCodes(again.self).includes(201), 'entering it again creates a new room');
    await alice.stop();
  });

  await t.test('a client without MUC support (no <x/>) gets an instant room it can use at once', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    const joined = await join(alice, 'legacy@muc.localhost/Alice', { muc: false });
    t.same(statusCodes(joined.self), [110, 201]);
    await join(bob, 'legacy@muc.localhost/Bob');
    t.pass('the room was not locked');
    await Promise.all([alice.stop(), bob.stop()]);
  });
});

t.test('with --muc-room-creation=admins only the server admins create rooms', async (t) => {
  const server = await startTestServer(t, { args: [...MUC_ARGS, '--muc-room-creation=admins', '--admins=boss@localhost'] });
  await server.addUser('boss');
  await server.addUser('bob');
  const bob = await server.login('bob');
  t.equal(await joinError(bob, 'new@muc.localhost/Bob'), 'not-allowed');
  const boss = await server.login('boss');
  await createRoom(boss, 'new@muc.localhost/Boss');
  await join(bob, 'new@muc.localhost/Bob');
  t.pass('others may enter a room an admin created');
});

t.test('an unknown or bad --muc- key stops start-up with a message naming it', async (t) => {
  const options = (args: string[]) => {
    const config = loadConfig(['--virt-hosts=localhost', ...MUC_ARGS, ...args]);
    return readMucOptions({ name: 'muc', config, option: (key) => config.raw.get(`--muc-${key}`) });
  };
  t.match(options([]), { historySize: 20, roomCreation: 'any', maxUsers: 200 }, 'defaults');
  t.throws(() => options(['--muc-histroy-size=5']), /--muc-histroy-size: unknown key/);
  t.throws(() => options(['--muc-history-size=lots']), /--muc-history-size: "lots" is not an integer/);
  t.throws(() => options(['--muc-room-creation=nobody']), /--muc-room-creation: "nobody" is not one of any, admins/);
});
