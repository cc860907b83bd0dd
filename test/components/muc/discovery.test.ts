import t from 'tap';
import { MUC_ARGS, NS_DATA, createRoom, discoInfo, discoItems, errorOf, features, join } from '../../helpers/muc';
import { startTestServer } from '../../helpers/server';

t.test('room discovery', async (t) => {
  const server = await startTestServer(t, { args: MUC_ARGS });
  for (const user of ['alice', 'bob']) await server.addUser(user);
  const alice = await server.login('alice', { resource: 'a' });
  const bob = await server.login('bob', { resource: 'b' });

  await t.test('the server lists the MUC service among its items', async (t) => {
    t.ok((await discoItems(bob, 'localhost')).some((i) => i.attrs.jid === 'muc.localhost'));
  });

  await t.test('the service is a conference/text entity with the muc feature', async (t) => {
    const info = await discoInfo(bob, 'muc.localhost');
    t.match(info.getChild('query')?.getChild('identity')?.attrs, { category: 'conference', type: 'text' });
    t.ok(features(info).includes('http://jabber.org/protocol/muc'));
  });

  await t.test('disco#items on the service lists public rooms with their names, not hidden or locked ones', async (t) => {
    await createRoom(alice, 'garden@muc.localhost/Alice', { 'muc#roomconfig_roomname': 'The Garden' });
    await createRoom(alice, 'kitchen@muc.localhost/Alice');
    await createRoom(alice, 'attic@muc.localhost/Alice', { 'muc#roomconfig_publicroom': '0' });
    await createRoom(alice, 'cellar@muc.localhost/Alice', { 'muc#roomconfig_persistentroom': '1' });
    await join(alice, 'unfinished@muc.localhost/Alice');
    const items = await discoItems(bob, 'muc.localhost');
    t.same(
      items.map((i) => [i.attrs.jid, i.attrs.name ?? '']),
      [
        ['cellar@muc.localhost', ''],
        ['garden@muc.localhost', 'The Garden'],
        ['kitchen@muc.localhost', ''],
      ],
    );
  });

  await t.test('disco#info on a room gives its identity, muc_* features for its configuration and the roominfo form', async (t) => {
    await createRoom(alice, 'salon@muc.localhost/Alice', {
      'muc#roomconfig_roomname': 'Salon',
      'muc#roomconfig_roomdesc': 'Talk of the town',
      'muc#roomconfig_persistentroom': '1',
      'muc#roomconfig_membersonly': '1',
      'muc#roomconfig_moderatedroom': '1',
      'muc#roomconfig_whois': 'anyone',
      'muc#roomconfig_publicroom': '0',
    });
    const info = await discoInfo(bob, 'salon@muc.localhost');
    t.match(info.getChild('query')?.getChild('identity')?.attrs, { category: 'conference', type: 'text', name: 'Salon' });
    const found = features(info);
    for (const feature of ['http://jabber.org/protocol/muc', 'muc_persistent', 'muc_membersonly', 'muc_moderated', 'muc_nonanonymous', 'muc_hidden', 'muc_unsecured']) {
      t.ok(found.includes(feature), feature);
    }
    const form = info.getChild('query')?.getChild('x', NS_DATA);
    const value = (name: string) => form?.getChildren('field').find((f) => f.attrs.var === name)?.getChildText('value');
    t.equal(value('FORM_TYPE'), 'http://jabber.org/protocol/muc#roominfo');
    t.equal(value('muc#roominfo_description'), 'Talk of the town');
    t.equal(value('muc#roominfo_occupants'), '1');

    const plain = features(await discoInfo(bob, 'kitchen@muc.localhost'));
    for (const feature of ['muc_temporary', 'muc_open', 'muc_unmoderated', 'muc_semianonymous', 'muc_public', 'muc_unsecured']) {
      t.ok(plain.includes(feature), `a default room: ${feature}`);
    }
  });

  await t.test('a room that does not exist, or is still locked, is item-not-found to others', async (t) => {
    t.equal(await errorOf(discoInfo(bob, 'nothing@muc.localhost')), 'item-not-found');
    t.equal(await errorOf(discoInfo(bob, 'unfinished@muc.localhost')), 'item-not-found');
  });

  await t.test('disco#items on a public room lists its occupants', async (t) => {
    await join(bob, 'garden@muc.localhost/Bob');
    const items = await discoItems(bob, 'garden@muc.localhost');
    t.same(items.map((i) => i.attrs.jid).sort(), ['garden@muc.localhost/Alice', 'garden@muc.localhost/Bob']);
  });
});
