import t from 'tap';
import { forEachDatabase } from '../../helpers/databases';
import {
  MUC_ARGS,
  NS_DATA,
  NS_MUC_OWNER,
  adminGet,
  adminSet,
  configure,
  createRoom,
  discoInfo,
  errorOf,
  features,
  heard,
  join,
  joinError,
  leave,
  presenceOf,
  say,
  statusCodes,
} from '../../helpers/muc';
import { nextStanza, startTestServer, xml } from '../../helpers/server';

function configFormOf(result: { getChild(name: string, ns?: string): any }) {
  const x = result.getChild('query', NS_MUC_OWNER)?.getChild('x', NS_DATA);
  const fields = new Map<string, string[]>();
  for (const field of x?.getChildren('field') ?? []) fields.set(field.attrs.var, field.getChildren('value').map((v: any) => v.getText()));
  return fields;
}

t.test('room configuration', async (t) => {
  const server = await startTestServer(t, { args: MUC_ARGS });
  for (const user of ['alice', 'bob', 'carol']) await server.addUser(user);

  await t.test('the owner gets the muc#roomconfig form; others are forbidden', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await join(alice, 'form@muc.localhost/Alice');
    const result = await alice.iqCaller.request(xml('iq', { type: 'get', to: 'form@muc.localhost' }, xml('query', { xmlns: NS_MUC_OWNER })));
    const fields = configFormOf(result);
    t.same(fields.get('FORM_TYPE'), ['http://jabber.org/protocol/muc#roomconfig']);
    for (const name of [
      'muc#roomconfig_roomname', 'muc#roomconfig_roomdesc', 'muc#roomconfig_persistentroom', 'muc#roomconfig_publicroom',
      'muc#roomconfig_membersonly', 'muc#roomconfig_passwordprotectedroom', 'muc#roomconfig_roomsecret', 'muc#roomconfig_moderatedroom',
      'muc#roomconfig_whois', 'muc#roomconfig_changesubject', 'muc#roomconfig_allowinvites', 'muc#roomconfig_maxusers', 'muc#roomconfig_historylength',
    ]) {
      t.ok(fields.has(name), name);
    }
    t.same(fields.get('muc#roomconfig_persistentroom'), ['0'], 'rooms are temporary by default');
    await configure(alice, 'form@muc.localhost', { 'muc#roomconfig_roomname': 'The Form Room' });
    await join(bob, 'form@muc.localhost/Bob');
    t.equal(await errorOf(bob.iqCaller.request(xml('iq', { type: 'get', to: 'form@muc.localhost' }, xml('query', { xmlns: NS_MUC_OWNER })))), 'forbidden');
    t.equal(await errorOf(configure(bob, 'form@muc.localhost', {})), 'forbidden');
    const info = await discoInfo(bob, 'form@muc.localhost');
    t.equal(info.getChild('query')?.getChild('identity')?.attrs.name, 'The Form Room', 'the name shows in disco#info');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('occupants hear of a configuration change (104), and of the room turning non-anonymous (172)', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'changes@muc.localhost/Alice');
    await join(bob, 'changes@muc.localhost/Bob');
    const notice = nextStanza(bob, (s) => s.is('message') && s.attrs.from === 'changes@muc.localhost' && statusCodes(s).length > 0);
    await configure(alice, 'changes@muc.localhost', { 'muc#roomconfig_whois': 'anyone' });
    t.same(statusCodes(await notice), [104, 172]);
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('a bad value is not-acceptable and changes nothing', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    await createRoom(alice, 'strict@muc.localhost/Alice');
    t.equal(await errorOf(configure(alice, 'strict@muc.localhost', { 'muc#roomconfig_maxusers': 'many' })), 'not-acceptable');
    t.equal(await errorOf(configure(alice, 'strict@muc.localhost', { 'muc#roomconfig_passwordprotectedroom': '1' })), 'not-acceptable', 'a password room needs a secret');
    t.ok(features(await discoInfo(alice, 'strict@muc.localhost')).includes('muc_unsecured'));
    await alice.stop();
  });

  await t.test('cancelling the first configuration destroys the new room', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    await join(alice, 'cancelled@muc.localhost/Alice');
    const gone = presenceOf(alice, 'cancelled@muc.localhost/Alice', 'unavailable');
    await alice.iqCaller.request(xml('iq', { type: 'set', to: 'cancelled@muc.localhost' }, xml('query', { xmlns: NS_MUC_OWNER }, xml('x', { xmlns: NS_DATA, type: 'cancel' }))));
    await gone;
    t.equal(await errorOf(discoInfo(alice, 'cancelled@muc.localhost')), 'item-not-found');
    await alice.stop();
  });

  await t.test('a members-only room: non-members get registration-required, members enter, removed members leave with 321', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'club@muc.localhost/Alice', { 'muc#roomconfig_membersonly': '1' });
    t.equal(await joinError(bob, 'club@muc.localhost/Bob'), 'registration-required');
    await adminSet(alice, 'club@muc.localhost', xml('item', { jid: 'bob@localhost', affiliation: 'member' }));
    const joined = await join(bob, 'club@muc.localhost/Bob');
    t.equal(joined.self.getChild('x', 'http://jabber.org/protocol/muc#user')?.getChild('item')?.attrs.affiliation, 'member');
    t.same((await adminGet(bob, 'club@muc.localhost', { affiliation: 'member' })).map((i) => i.attrs.jid), ['bob@localhost'], 'members may read the member list');
    const out = presenceOf(bob, 'club@muc.localhost/Bob', 'unavailable');
    await adminSet(alice, 'club@muc.localhost', xml('item', { jid: 'bob@localhost', affiliation: 'none' }));
    t.same(statusCodes(await out), [110, 321]);
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('a room turned members-only sends its non-members out with 322', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'closing@muc.localhost/Alice');
    await join(bob, 'closing@muc.localhost/Bob');
    const out = presenceOf(bob, 'closing@muc.localhost/Bob', 'unavailable');
    await configure(alice, 'closing@muc.localhost', { 'muc#roomconfig_membersonly': '1' });
    t.same(statusCodes(await out), [110, 322]);
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('a password-protected room: no or a wrong password is not-authorized, the right one enters', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await createRoom(alice, 'vault@muc.localhost/Alice', { 'muc#roomconfig_passwordprotectedroom': '1', 'muc#roomconfig_roomsecret': 'open sesame' });
    t.ok(features(await discoInfo(bob, 'vault@muc.localhost')).includes('muc_passwordprotected'));
    t.equal(await joinError(bob, 'vault@muc.localhost/Bob'), 'not-authorized');
    t.equal(await joinError(bob, 'vault@muc.localhost/Bob', { password: 'open says me' }), 'not-authorized');
    await join(bob, 'vault@muc.localhost/Bob', { password: 'open sesame' });
    t.pass('entered with the password');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('a full room (muc#roomconfig_maxusers) refuses another user with service-unavailable', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    const carol = await server.login('carol', { resource: 'c' });
    await createRoom(alice, 'tiny@muc.localhost/Alice', { 'muc#roomconfig_maxusers': '2' });
    await join(bob, 'tiny@muc.localhost/Bob');
    t.equal(await joinError(carol, 'tiny@muc.localhost/Carol'), 'service-unavailable');
    await leave(bob, 'tiny@muc.localhost/Bob');
    await join(carol, 'tiny@muc.localhost/Carol');
    t.pass('a seat freed is a seat taken');
    await Promise.all([alice.stop(), bob.stop(), carol.stop()]);
  });

  await t.test('muc#roomconfig_historylength bounds the history a newcomer gets', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    await createRoom(alice, 'short@muc.localhost/Alice', { 'muc#roomconfig_historylength': '2' });
    const last = heard(alice, 'short@muc.localhost', 'm3');
    for (const body of ['m1', 'm2', 'm3']) await say(alice, 'short@muc.localhost', body);
    await last;
    const bob = await server.login('bob', { resource: 'b' });
    t.same((await join(bob, 'short@muc.localhost/Bob')).history.map((m) => m.getChildText('body')), ['m2', 'm3']);
    await Promise.all([alice.stop(), bob.stop()]);
  });
});

forEachDatabase('persistent rooms', async (t, dbUri) => {
  const args = [...MUC_ARGS, '--muc-history-size=3'];
  const first = await startTestServer(t, { dbUri, args });
  for (const user of ['alice', 'bob', 'carol']) await first.addUser(user);

  const alice = await first.login('alice', { resource: 'a' });
  const bob = await first.login('bob', { resource: 'b' });
  await createRoom(alice, 'archive@muc.localhost/Alice', {
    'muc#roomconfig_persistentroom': '1',
    'muc#roomconfig_roomname': 'The Archive',
    'muc#roomconfig_moderatedroom': '1',
  });
  await adminSet(alice, 'archive@muc.localhost', xml('item', { jid: 'bob@localhost', affiliation: 'member' }), xml('item', { jid: 'carol@localhost', affiliation: 'outcast' }, xml('reason', {}, 'troll')));
  await alice.send(xml('message', { to: 'archive@muc.localhost', type: 'groupchat' }, xml('subject', {}, 'Kept forever')));
  const last = heard(alice, 'archive@muc.localhost', 'p4');
  for (const body of ['p1', 'p2', 'p3', 'p4']) await say(alice, 'archive@muc.localhost', body);
  await last;
  await createRoom(alice, 'fleeting@muc.localhost/Alice');
  await leave(alice, 'archive@muc.localhost/Alice');
  t.ok(features(await discoInfo(bob, 'archive@muc.localhost')).includes('muc_persistent'), 'the room stays when its last occupant leaves');
  // Their clients go first. Left connected, @xmpp/client reconnects to the stopped node's port
  // every second; a reconnection under way when its stop() comes at teardown can outlive the stop.
  // Once, beside the benchmark, every test here passed and then the file ran into tap's timeout.
  await Promise.all([alice.stop(), bob.stop()]);
  await first.node.stop();

  const second = await startTestServer(t, { dbUri, args });
  const bob2 = await second.login('bob', { resource: 'b' });
  const info = await discoInfo(bob2, 'archive@muc.localhost');
  t.equal(info.getChild('query')?.getChild('identity')?.attrs.name, 'The Archive', 'after a restart the configuration is back');
  t.ok(features(info).includes('muc_moderated'));
  const joined = await join(bob2, 'archive@muc.localhost/Bob');
  t.equal(joined.self.getChild('x', 'http://jabber.org/protocol/muc#user')?.getChild('item')?.attrs.role, 'participant', 'the member has voice in the moderated room');
  t.equal(joined.subject.getChildText('subject'), 'Kept forever', 'the subject');
  t.same(joined.history.map((m) => m.getChildText('body')), ['p2', 'p3', 'p4'], 'the history, trimmed to its length');
  const carol = await second.login('carol', { resource: 'c' });
  t.equal(await joinError(carol, 'archive@muc.localhost/Carol'), 'forbidden', 'the ban');
  t.equal(await errorOf(discoInfo(bob2, 'fleeting@muc.localhost')), 'item-not-found', 'a temporary room is not kept');
  const rows = await second.node.storage.knex('muc_history').where({ room: 'archive@muc.localhost' }).count({ n: '*' });
  t.equal(Number(rows[0].n), 3, 'the database keeps only the configured history length');

  const alice2 = await second.login('alice', { resource: 'a' });
  await join(alice2, 'archive@muc.localhost/Alice');
  await configure(alice2, 'archive@muc.localhost', { 'muc#roomconfig_persistentroom': '0' });
  t.equal((await second.node.storage.knex('muc_rooms').where({ jid: 'archive@muc.localhost' })).length, 0, 'a room made temporary leaves the database');
});
