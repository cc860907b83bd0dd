import t from 'tap';
import { MUC_ARGS, createRoom, heard, join, nextError, say } from '../../helpers/muc';
import { collect, nextStanza, sleep, startTestServer, xml } from '../../helpers/server';

const DELAY = 'urn:xmpp:delay';

t.test('talking in rooms', async (t) => {
  const server = await startTestServer(t, { args: [...MUC_ARGS, '--muc-history-size=5'] });
  for (const user of ['alice', 'bob', 'carol']) await server.addUser(user);

  await t.test('a groupchat message is reflected to every occupant, the sender included, from room/nick', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    const carol = await server.login('carol', { resource: 'c' });
    await createRoom(alice, 'chat@muc.localhost/Alice');
    await join(bob, 'chat@muc.localhost/Bob');
    await join(carol, 'chat@muc.localhost/Carol');
    const got = [alice, bob, carol].map((c) => heard(c, 'chat@muc.localhost', 'hello room'));
    await say(bob, 'chat@muc.localhost', 'hello room', 'msg-1');
    for (const message of await Promise.all(got)) {
      t.equal(message.attrs.from, 'chat@muc.localhost/Bob');
      t.equal(message.attrs.type, 'groupchat');
      t.equal(message.attrs.id, 'msg-1', 'the id is kept, so the sender recognises its reflection');
    }
    await Promise.all([alice.stop(), bob.stop(), carol.stop()]);
  });

  await t.test('messages from one occupant arrive in the order sent, at every occupant', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'order@muc.localhost/Alice');
    await join(bob, 'order@muc.localhost/Bob');
    const seen = collect(bob);
    const last = heard(bob, 'order@muc.localhost', 'n19');
    for (let i = 0; i < 20; i++) await say(alice, 'order@muc.localhost', `n${i}`);
    await last;
    const bodies = seen.filter((s) => s.is('message') && s.getChildText('body')?.startsWith('n')).map((s) => s.getChildText('body'));
    t.same(bodies, Array.from({ length: 20 }, (_, i) => `n${i}`));
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('someone outside the room may not send to it, and a room that does not exist says item-not-found', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'closed@muc.localhost/Alice');
    const refused = nextError(bob, 'closed@muc.localhost');
    await say(bob, 'closed@muc.localhost', 'let me in');
    t.equal(await refused, 'not-acceptable');
    const missing = nextError(bob, 'nowhere@muc.localhost');
    await say(bob, 'nowhere@muc.localhost', 'anyone?');
    t.equal(await missing, 'item-not-found');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('a private message goes to one occupant from the sender\'s room/nick, marked muc#user', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    const carol = await server.login('carol', { resource: 'c' });
    await createRoom(alice, 'pm@muc.localhost/Alice');
    await join(bob, 'pm@muc.localhost/Bob');
    await join(carol, 'pm@muc.localhost/Carol');
    const carolSeen = collect(carol);
    const toBob = nextStanza(bob, (s) => s.is('message') && s.getChildText('body') === 'psst');
    await alice.send(xml('message', { to: 'pm@muc.localhost/Bob', type: 'chat' }, xml('body', {}, 'psst')));
    const pm = await toBob;
    t.equal(pm.attrs.from, 'pm@muc.localhost/Alice');
    t.equal(pm.attrs.type, 'chat');
    t.ok(pm.getChild('x', 'http://jabber.org/protocol/muc#user'));
    const missing = nextError(alice, 'pm@muc.localhost/Nobody');
    await alice.send(xml('message', { to: 'pm@muc.localhost/Nobody', type: 'chat' }, xml('body', {}, 'hello?')));
    t.equal(await missing, 'item-not-found', 'to a nick nobody holds: item-not-found');
    const groupchatPm = nextError(alice, 'pm@muc.localhost/Bob');
    await alice.send(xml('message', { to: 'pm@muc.localhost/Bob', type: 'groupchat' }, xml('body', {}, 'wrong type')));
    t.equal(await groupchatPm, 'bad-request', 'a private message of type groupchat is refused');
    await sleep(100);
    t.equal(carolSeen.filter((s) => s.is('message') && s.getChildText('body') === 'psst').length, 0, 'nobody else sees it');
    await Promise.all([alice.stop(), bob.stop(), carol.stop()]);
  });

  await t.test('private messages follow muc#roomconfig_allowpm', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'nopm@muc.localhost/Alice', { 'muc#roomconfig_allowpm': 'moderators' });
    await join(bob, 'nopm@muc.localhost/Bob');
    const refused = nextError(bob, 'nopm@muc.localhost/Alice');
    await bob.send(xml('message', { to: 'nopm@muc.localhost/Alice', type: 'chat' }, xml('body', {}, 'hi')));
    t.equal(await refused, 'forbidden', 'a participant may not');
    const toBob = nextStanza(bob, (s) => s.is('message') && s.getChildText('body') === 'from the mod');
    await alice.send(xml('message', { to: 'nopm@muc.localhost/Bob', type: 'chat' }, xml('body', {}, 'from the mod')));
    await toBob;
    t.pass('a moderator may');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('a newcomer gets the recent history with delay stamps from the room, then the subject', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    await createRoom(alice, 'hist@muc.localhost/Alice');
    const last = heard(alice, 'hist@muc.localhost', 'h6');
    for (let i = 0; i < 7; i++) await say(alice, 'hist@muc.localhost', `h${i}`);
    await last;
    const bob = await server.login('bob', { resource: 'b' });
    const joined = await join(bob, 'hist@muc.localhost/Bob');
    t.same(joined.history.map((m) => m.getChildText('body')), ['h2', 'h3', 'h4', 'h5', 'h6'], '--muc-history-size=5 keeps the last five');
    const first = joined.history[0];
    t.equal(first.attrs.from, 'hist@muc.localhost/Alice');
    const delay = first.getChild('delay', DELAY);
    t.equal(delay?.attrs.from, 'hist@muc.localhost', 'XEP-0203 delay stamped by the room');
    t.ok(delay && !Number.isNaN(Date.parse(delay.attrs.stamp)), 'with a timestamp');

    const carol = await server.login('carol', { resource: 'c' });
    const some = await join(carol, 'hist@muc.localhost/Carol', { history: { maxstanzas: '2' } });
    t.same(some.history.map((m) => m.getChildText('body')), ['h5', 'h6'], '<history maxstanzas=2/>');
    await carol.send(xml('presence', { to: 'hist@muc.localhost/Carol', type: 'unavailable' }));
    const none = await join(carol, 'hist@muc.localhost/Carol2', { history: { maxchars: '0' } });
    t.same(none.history, [], '<history maxchars=0/> asks for none');
    await carol.send(xml('presence', { to: 'hist@muc.localhost/Carol2', type: 'unavailable' }));
    const since = await join(carol, 'hist@muc.localhost/Carol3', { history: { since: new Date(Date.now() + 60_000).toISOString() } });
    t.same(since.history, [], '<history since=(the future)/> gets nothing');
    await Promise.all([alice.stop(), bob.stop(), carol.stop()]);
  });

  await t.test('the subject: moderators change it, everyone sees it, newcomers get it after the history', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'topic@muc.localhost/Alice');
    await join(bob, 'topic@muc.localhost/Bob');
    const bobSees = nextStanza(bob, (s) => s.is('message') && s.getChildText('subject') === 'Tea time');
    await alice.send(xml('message', { to: 'topic@muc.localhost', type: 'groupchat' }, xml('subject', {}, 'Tea time')));
    t.equal((await bobSees).attrs.from, 'topic@muc.localhost/Alice');
    const refused = nextError(bob, 'topic@muc.localhost');
    await bob.send(xml('message', { to: 'topic@muc.localhost', type: 'groupchat' }, xml('subject', {}, 'Coffee time')));
    t.equal(await refused, 'forbidden', 'a participant may not change it by default');
    await say(alice, 'topic@muc.localhost', 'before the subject');
    const carol = await server.login('carol', { resource: 'c' });
    const joined = await join(carol, 'topic@muc.localhost/Carol');
    t.equal(joined.subject.getChildText('subject'), 'Tea time');
    t.equal(joined.subject.attrs.from, 'topic@muc.localhost/Alice');
    t.same(joined.history.map((m) => m.getChildText('body')), ['before the subject'], 'history came first');
    await Promise.all([alice.stop(), bob.stop(), carol.stop()]);
  });

  await t.test('with muc#roomconfig_changesubject participants may change the subject', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'topic2@muc.localhost/Alice', { 'muc#roomconfig_changesubject': '1' });
    await join(bob, 'topic2@muc.localhost/Bob');
    const aliceSees = nextStanza(alice, (s) => s.is('message') && s.getChildText('subject') === 'Bob was here');
    await bob.send(xml('message', { to: 'topic2@muc.localhost', type: 'groupchat' }, xml('subject', {}, 'Bob was here')));
    t.equal((await aliceSees).attrs.from, 'topic2@muc.localhost/Bob');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('an occupant whose client bounces room traffic is removed with status 333', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'bounce@muc.localhost/Alice');
    await join(bob, 'bounce@muc.localhost/Bob');
    const gone = nextStanza(alice, (s) => s.is('presence') && s.attrs.from === 'bounce@muc.localhost/Bob' && s.attrs.type === 'unavailable');
    await bob.send(xml('message', { to: 'bounce@muc.localhost', type: 'error' }, xml('error', { type: 'cancel' }, xml('service-unavailable', { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas' }))));
    const removed = await gone;
    t.ok(removed.getChild('x', 'http://jabber.org/protocol/muc#user')?.getChildren('status').some((s) => s.attrs.code === '333'));
    await Promise.all([alice.stop(), bob.stop()]);
  });
});
