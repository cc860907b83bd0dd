import t from 'tap';
import {
  MUC_ARGS,
  adminGet,
  adminSet,
  createRoom,
  errorOf,
  heard,
  join,
  joinError,
  mucItem,
  nextError,
  presenceOf,
  say,
  statusCodes,
} from '../../helpers/muc';
import { nextStanza, startTestServer, xml } from '../../helpers/server';

const item = (attrs: Record<string, string>, reason?: string) => xml('item', attrs, ...(reason ? [xml('reason', {}, reason)] : []));

t.test('roles and affiliations', async (t) => {
  const server = await startTestServer(t, { args: MUC_ARGS });
  for (const user of ['alice', 'bob', 'carol', 'dave']) await server.addUser(user);

  await t.test('a moderator kicks a participant: everyone sees 307 with the actor and reason, and the kicked user is out', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    const carol = await server.login('carol', { resource: 'c' });
    await createRoom(alice, 'kick@muc.localhost/Alice');
    await join(bob, 'kick@muc.localhost/Bob');
    await join(carol, 'kick@muc.localhost/Carol');
    const bobSelf = presenceOf(bob, 'kick@muc.localhost/Bob', 'unavailable');
    const carolSees = presenceOf(carol, 'kick@muc.localhost/Bob', 'unavailable');
    await adminSet(alice, 'kick@muc.localhost', item({ nick: 'Bob', role: 'none' }, 'too loud'));
    const self = await bobSelf;
    t.same(statusCodes(self), [110, 307]);
    t.equal(mucItem(self)?.getChild('actor')?.attrs.nick, 'Alice');
    t.equal(mucItem(self)?.getChildText('reason'), 'too loud');
    const seen = await carolSees;
    t.same(statusCodes(seen), [307]);
    t.equal(mucItem(seen)?.attrs.role, 'none');
    const refused = nextError(bob, 'kick@muc.localhost');
    await say(bob, 'kick@muc.localhost', 'still here?');
    t.equal(await refused, 'not-acceptable', 'the kicked user is no longer an occupant');
    await join(bob, 'kick@muc.localhost/Bob');
    t.pass('but may come back (a kick is not a ban)');
    await Promise.all([alice.stop(), bob.stop(), carol.stop()]);
  });

  await t.test('participants may not kick, and nobody kicks an owner or admin', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    const carol = await server.login('carol', { resource: 'c' });
    await createRoom(alice, 'nokick@muc.localhost/Alice');
    await join(bob, 'nokick@muc.localhost/Bob');
    await join(carol, 'nokick@muc.localhost/Carol');
    t.equal(await errorOf(adminSet(bob, 'nokick@muc.localhost', item({ nick: 'Carol', role: 'none' }))), 'forbidden');
    await adminSet(alice, 'nokick@muc.localhost', item({ jid: 'carol@localhost', affiliation: 'admin' }));
    await adminSet(alice, 'nokick@muc.localhost', item({ jid: 'bob@localhost', affiliation: 'admin' }));
    t.equal(await errorOf(adminSet(carol, 'nokick@muc.localhost', item({ nick: 'Alice', role: 'none' }))), 'not-allowed', 'an admin may not kick the owner');
    t.equal(await errorOf(adminSet(carol, 'nokick@muc.localhost', item({ nick: 'Bob', role: 'none' }))), 'not-allowed', 'nor another admin');
    t.equal(await errorOf(adminSet(alice, 'nokick@muc.localhost', item({ nick: 'Nobody', role: 'none' }))), 'item-not-found');
    await Promise.all([alice.stop(), bob.stop(), carol.stop()]);
  });

  await t.test('a ban removes the user with 301, keeps it out, and shows on the outcast list', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'ban@muc.localhost/Alice');
    await join(bob, 'ban@muc.localhost/Bob');
    const bobSelf = presenceOf(bob, 'ban@muc.localhost/Bob', 'unavailable');
    const aliceSees = presenceOf(alice, 'ban@muc.localhost/Bob', 'unavailable');
    await adminSet(alice, 'ban@muc.localhost', item({ jid: 'bob@localhost', affiliation: 'outcast' }, 'spam'));
    const self = await bobSelf;
    t.same(statusCodes(self), [110, 301]);
    t.match(mucItem(self)?.attrs, { affiliation: 'outcast', role: 'none' });
    t.equal(mucItem(self)?.getChildText('reason'), 'spam');
    t.same(statusCodes(await aliceSees), [301]);
    t.equal(await joinError(bob, 'ban@muc.localhost/Bobby'), 'forbidden', 'a banned user cannot enter');
    const outcasts = await adminGet(alice, 'ban@muc.localhost', { affiliation: 'outcast' });
    t.same(outcasts.map((i) => [i.attrs.jid, i.getChildText('reason')]), [['bob@localhost', 'spam']]);
    await adminSet(alice, 'ban@muc.localhost', item({ jid: 'bob@localhost', affiliation: 'none' }));
    await join(bob, 'ban@muc.localhost/Bob');
    t.pass('lifting the ban lets the user in again');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('in a moderated room visitors need voice to speak; moderators grant and revoke it', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'stage@muc.localhost/Alice', { 'muc#roomconfig_moderatedroom': '1' });
    const joined = await join(bob, 'stage@muc.localhost/Bob');
    t.equal(mucItem(joined.self)?.attrs.role, 'visitor');
    const refused = nextError(bob, 'stage@muc.localhost');
    await say(bob, 'stage@muc.localhost', 'can I speak?');
    t.equal(await refused, 'forbidden');
    const voiced = nextStanza(bob, (s) => s.is('presence') && s.attrs.from === 'stage@muc.localhost/Bob' && mucItem(s)?.attrs.role === 'participant');
    await adminSet(alice, 'stage@muc.localhost', item({ nick: 'Bob', role: 'participant' }));
    t.same(statusCodes(await voiced), [110]);
    const aliceHears = heard(alice, 'stage@muc.localhost', 'thank you');
    await say(bob, 'stage@muc.localhost', 'thank you');
    await aliceHears;
    t.pass('with voice the participant speaks');
    const visitors = await adminGet(alice, 'stage@muc.localhost', { role: 'participant' });
    t.same(visitors.map((i) => i.attrs.nick), ['Bob'], 'the moderator lists participants');
    t.equal(await errorOf(adminGet(bob, 'stage@muc.localhost', { role: 'participant' })), 'forbidden', 'a participant may not');
    const silenced = nextStanza(bob, (s) => s.is('presence') && s.attrs.from === 'stage@muc.localhost/Bob' && mucItem(s)?.attrs.role === 'visitor');
    await adminSet(alice, 'stage@muc.localhost', item({ nick: 'Bob', role: 'visitor' }));
    await silenced;
    t.pass('voice is revoked');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('owners grant membership, admin and ownership; the lists show them; changes reach the occupant', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'ranks@muc.localhost/Alice');
    await join(bob, 'ranks@muc.localhost/Bob');
    const promoted = nextStanza(bob, (s) => s.is('presence') && s.attrs.from === 'ranks@muc.localhost/Bob' && mucItem(s)?.attrs.affiliation === 'admin');
    await adminSet(alice, 'ranks@muc.localhost', item({ jid: 'bob@localhost', affiliation: 'admin' }), item({ jid: 'carol@localhost', affiliation: 'member' }));
    t.equal(mucItem(await promoted)?.attrs.role, 'moderator', 'an admin becomes moderator');
    t.same((await adminGet(alice, 'ranks@muc.localhost', { affiliation: 'admin' })).map((i) => i.attrs.jid), ['bob@localhost']);
    t.same((await adminGet(alice, 'ranks@muc.localhost', { affiliation: 'member' })).map((i) => i.attrs.jid), ['carol@localhost']);
    t.same((await adminGet(bob, 'ranks@muc.localhost', { affiliation: 'owner' })).map((i) => i.attrs.jid), ['alice@localhost'], 'admins read the lists too');
    t.equal(await errorOf(adminSet(bob, 'ranks@muc.localhost', item({ jid: 'dave@localhost', affiliation: 'admin' }))), 'not-allowed', 'admins may not make admins');
    await adminSet(bob, 'ranks@muc.localhost', item({ jid: 'dave@localhost', affiliation: 'member' }));
    t.pass('admins may make members');
    t.equal(await errorOf(adminSet(bob, 'ranks@muc.localhost', item({ jid: 'alice@localhost', affiliation: 'none' }))), 'not-allowed', 'admins may not demote the owner');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('the last owner cannot step down (conflict); with a second owner it may', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    await createRoom(alice, 'owners@muc.localhost/Alice');
    t.equal(await errorOf(adminSet(alice, 'owners@muc.localhost', item({ jid: 'alice@localhost', affiliation: 'admin' }))), 'conflict');
    await adminSet(alice, 'owners@muc.localhost', item({ jid: 'bob@localhost', affiliation: 'owner' }));
    await adminSet(alice, 'owners@muc.localhost', item({ jid: 'alice@localhost', affiliation: 'admin' }));
    t.same((await adminGet(alice, 'owners@muc.localhost', { affiliation: 'owner' })).map((i) => i.attrs.jid), ['bob@localhost']);
    await alice.stop();
  });

  await t.test('a participant may not read affiliation lists', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'secret@muc.localhost/Alice');
    await join(bob, 'secret@muc.localhost/Bob');
    t.equal(await errorOf(adminGet(bob, 'secret@muc.localhost', { affiliation: 'outcast' })), 'forbidden');
    t.equal(await errorOf(adminSet(bob, 'secret@muc.localhost', item({ jid: 'dave@localhost', affiliation: 'outcast' }))), 'forbidden');
    await Promise.all([alice.stop(), bob.stop()]);
  });
});
