import t from 'tap';
import { forEachDatabase } from '../../helpers/databases';
import {
  MUC_ARGS,
  NS_MUC_OWNER,
  NS_MUC_USER,
  adminGet,
  createRoom,
  discoInfo,
  errorOf,
  join,
  mucItem,
  nextError,
  presenceOf,
} from '../../helpers/muc';
import { nextStanza, startTestServer, xml } from '../../helpers/server';

const invite = (room: string, to: string, reason?: string) =>
  xml('message', { to: room }, xml('x', { xmlns: NS_MUC_USER }, xml('invite', { to }, ...(reason ? [xml('reason', {}, reason)] : []))));

t.test('invitations', async (t) => {
  const server = await startTestServer(t, { args: MUC_ARGS });
  for (const user of ['alice', 'bob', 'carol']) await server.addUser(user);

  await t.test('a mediated invitation reaches the invitee from the room, naming the inviter, reason and password', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'party@muc.localhost/Alice', { 'muc#roomconfig_passwordprotectedroom': '1', 'muc#roomconfig_roomsecret': 'cake' });
    const got = nextStanza(bob, (s) => s.is('message') && s.getChild('x', NS_MUC_USER)?.getChild('invite') !== undefined);
    await alice.send(invite('party@muc.localhost', 'bob@localhost', 'come along'));
    const message = await got;
    t.equal(message.attrs.from, 'party@muc.localhost');
    const x = message.getChild('x', NS_MUC_USER)!;
    t.equal(x.getChild('invite')?.attrs.from, 'alice@localhost/a');
    t.equal(x.getChild('invite')?.getChildText('reason'), 'come along');
    t.equal(x.getChildText('password'), 'cake');
    await join(bob, 'party@muc.localhost/Bob', { password: x.getChildText('password')! });
    t.pass('the invitee enters with it');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('a declined invitation goes back to the inviter, from the room', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'dinner@muc.localhost/Alice');
    const invited = nextStanza(bob, (s) => s.is('message') && s.getChild('x', NS_MUC_USER)?.getChild('invite') !== undefined);
    await alice.send(invite('dinner@muc.localhost', 'bob@localhost'));
    const inviter = (await invited).getChild('x', NS_MUC_USER)!.getChild('invite')!.attrs.from;
    const declined = nextStanza(alice, (s) => s.is('message') && s.getChild('x', NS_MUC_USER)?.getChild('decline') !== undefined);
    await bob.send(xml('message', { to: 'dinner@muc.localhost' }, xml('x', { xmlns: NS_MUC_USER }, xml('decline', { to: inviter }, xml('reason', {}, 'busy')))));
    const message = await declined;
    t.equal(message.attrs.from, 'dinner@muc.localhost');
    t.equal(message.getChild('x', NS_MUC_USER)?.getChild('decline')?.attrs.from, 'bob@localhost');
    t.equal(message.getChild('x', NS_MUC_USER)?.getChild('decline')?.getChildText('reason'), 'busy');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('in a members-only room only admins invite, and the invitee becomes a member', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    const carol = await server.login('carol', { resource: 'c' });
    await createRoom(alice, 'guild@muc.localhost/Alice', { 'muc#roomconfig_membersonly': '1' });
    const invited = nextStanza(bob, (s) => s.is('message') && s.getChild('x', NS_MUC_USER)?.getChild('invite') !== undefined);
    await alice.send(invite('guild@muc.localhost', 'bob@localhost'));
    await invited;
    t.same((await adminGet(alice, 'guild@muc.localhost', { affiliation: 'member' })).map((i) => i.attrs.jid), ['bob@localhost']);
    await join(bob, 'guild@muc.localhost/Bob');
    const refused = nextError(bob, 'guild@muc.localhost');
    await bob.send(invite('guild@muc.localhost', 'carol@localhost'));
    t.equal(await refused, 'forbidden', 'a member may not invite without muc#roomconfig_allowinvites');
    await Promise.all([alice.stop(), bob.stop(), carol.stop()]);
  });

  await t.test('someone outside the room may not invite', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'private@muc.localhost/Alice');
    const refused = nextError(bob, 'private@muc.localhost');
    await bob.send(invite('private@muc.localhost', 'carol@localhost'));
    t.equal(await refused, 'not-acceptable');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('a direct invitation (XEP-0249) passes between users untouched', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    const got = nextStanza(bob, (s) => s.is('message') && s.getChild('x', 'jabber:x:conference') !== undefined);
    await alice.send(xml('message', { to: 'bob@localhost' }, xml('x', { xmlns: 'jabber:x:conference', jid: 'party@muc.localhost', reason: 'join us' })));
    const message = await got;
    t.equal(message.attrs.from, 'alice@localhost/a');
    t.equal(message.getChild('x', 'jabber:x:conference')?.attrs.jid, 'party@muc.localhost');
    await Promise.all([alice.stop(), bob.stop()]);
  });
});

forEachDatabase('destroying a room', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri, args: MUC_ARGS });
  for (const user of ['alice', 'bob', 'carol']) await server.addUser(user);
  const alice = await server.login('alice', { resource: 'a' });
  const bob = await server.login('bob', { resource: 'b' });
  const carol = await server.login('carol', { resource: 'c' });
  await createRoom(alice, 'doomed@muc.localhost/Alice', { 'muc#roomconfig_persistentroom': '1' });
  await join(bob, 'doomed@muc.localhost/Bob');
  await join(carol, 'doomed@muc.localhost/Carol');
  t.equal((await server.node.storage.knex('muc_rooms').where({ jid: 'doomed@muc.localhost' })).length, 1, 'the persistent room is stored');

  const destroy = (client: typeof alice) =>
    client.iqCaller.request(
      xml('iq', { type: 'set', to: 'doomed@muc.localhost' }, xml('query', { xmlns: NS_MUC_OWNER }, xml('destroy', { jid: 'phoenix@muc.localhost' }, xml('reason', {}, 'moving house')))),
    );
  t.equal(await errorOf(destroy(bob)), 'forbidden', 'only an owner destroys');

  const bobOut = presenceOf(bob, 'doomed@muc.localhost/Bob', 'unavailable');
  const carolOut = presenceOf(carol, 'doomed@muc.localhost/Carol', 'unavailable');
  await destroy(alice);
  for (const presence of await Promise.all([bobOut, carolOut])) {
    t.match(mucItem(presence)?.attrs, { affiliation: 'none', role: 'none' });
    const venue = presence.getChild('x', NS_MUC_USER)?.getChild('destroy');
    t.equal(venue?.attrs.jid, 'phoenix@muc.localhost', 'with the alternate venue');
    t.equal(venue?.getChildText('reason'), 'moving house', 'and the reason');
  }
  t.equal(await errorOf(discoInfo(bob, 'doomed@muc.localhost')), 'item-not-found', 'the room is gone');
  t.equal((await server.node.storage.knex('muc_rooms').where({ jid: 'doomed@muc.localhost' })).length, 0, 'from the database too');
  t.equal((await server.node.storage.knex('muc_affiliations').where({ room: 'doomed@muc.localhost' })).length, 0, 'with its affiliations');
});
