import { eventually } from '../../helpers/cluster';
import { forEachDatabase } from '../../helpers/databases';
import { query } from '../../helpers/mam';
import { MUC_ARGS, createRoom, discoInfo, errorOf, features, heard, join, say, adminSet } from '../../helpers/muc';
import { startTestServer, xml } from '../../helpers/server';

const WAIT_MS = 20_000;
const SID = 'urn:xmpp:sid:0';

forEachDatabase('XEP-0313 room archives', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri, args: MUC_ARGS });
  for (const user of ['alice', 'bob', 'carol', 'mallory']) await server.addUser(user);
  const alice = await server.login('alice', { resource: 'a' });
  const bob = await server.login('bob', { resource: 'b' });
  const rows = (room: string) => server.node.storage.knex('archive_messages').where({ user: room }).count({ n: '*' }).first().then((r) => Number((r as { n: number }).n));

  await t.test('messages with a body are archived on the room, each occupant gets the archive id, and anyone may page it', async (t) => {
    await createRoom(alice, 'tea@muc.localhost/Alice');
    await join(bob, 'tea@muc.localhost/Bob');
    t.ok(features(await discoInfo(bob, 'tea@muc.localhost')).includes('urn:xmpp:mam:2'), 'the room advertises MAM');
    const ids: string[] = [];
    for (let i = 1; i <= 4; i++) {
      const speaker = i % 2 ? alice : bob;
      const atBob = heard(bob, 'tea@muc.localhost', `t${i}`);
      const atAlice = heard(alice, 'tea@muc.localhost', `t${i}`);
      await say(speaker, 'tea@muc.localhost', `t${i}`);
      const [b, a] = await Promise.all([atBob, atAlice]);
      const sid = b.getChild('stanza-id', SID);
      t.equal(sid?.attrs.by, 'tea@muc.localhost', `t${i}: a stanza id by the room`);
      t.equal(a.getChild('stanza-id', SID)?.attrs.id, sid?.attrs.id, 'the same for every occupant');
      ids.push(sid!.attrs.id);
    }
    await alice.send(xml('message', { to: 'tea@muc.localhost', type: 'groupchat' }, xml('subject', {}, 'Tea time')));
    await eventually('archived', async () => (await rows('tea@muc.localhost')) === 4, WAIT_MS);
    const page = await query(bob, { to: 'tea@muc.localhost' });
    t.same(page.messages.map((m) => m.body), ['t1', 't2', 't3', 't4'], 'no subject change in the archive');
    t.same(page.messages.map((m) => m.id), ids);
    t.same(page.messages.map((m) => m.from), ['tea@muc.localhost/Alice', 'tea@muc.localhost/Bob', 'tea@muc.localhost/Alice', 'tea@muc.localhost/Bob'], 'from room/nick');
    const carol = await server.login('carol', { resource: 'c' });
    const late = await query(carol, { to: 'tea@muc.localhost', rsm: [xml('max', {}, '2'), xml('before')] });
    t.same(late.messages.map((m) => m.body), ['t3', 't4'], 'someone who was not there reads the newest page of an open room');
    t.equal(late.count, 4);
    const byNick = await query(carol, { to: 'tea@muc.localhost', fields: { with: 'tea@muc.localhost/Bob' } });
    t.same(byNick.messages.map((m) => m.body), ['t2', 't4'], 'with room/nick: one occupant\'s messages');
    await carol.stop();
  });

  await t.test('outcasts may not read it; a members-only room\'s archive is for members', async (t) => {
    await adminSet(alice, 'tea@muc.localhost', xml('item', { jid: 'mallory@localhost', affiliation: 'outcast' }));
    const mallory = await server.login('mallory', { resource: 'm' });
    t.equal(await errorOf(query(mallory, { to: 'tea@muc.localhost' })), 'forbidden');
    await createRoom(alice, 'club@muc.localhost/Alice', { 'muc#roomconfig_membersonly': '1' });
    await say(alice, 'club@muc.localhost', 'members only');
    await eventually('archived', async () => (await rows('club@muc.localhost')) === 1, WAIT_MS);
    const carol = await server.login('carol', { resource: 'c2' });
    t.equal(await errorOf(query(carol, { to: 'club@muc.localhost' })), 'forbidden');
    await adminSet(alice, 'club@muc.localhost', xml('item', { jid: 'carol@localhost', affiliation: 'member' }));
    t.same((await query(carol, { to: 'club@muc.localhost' })).messages.map((m) => m.body), ['members only'], 'a member may');
    await Promise.all([mallory.stop(), carol.stop()]);
  });

  await t.test('a forged room stanza id is replaced by the room\'s', async (t) => {
    const got = heard(bob, 'tea@muc.localhost', 'forged');
    await alice.send(xml('message', { to: 'tea@muc.localhost', type: 'groupchat' }, xml('body', {}, 'forged'), xml('stanza-id', { xmlns: SID, by: 'tea@muc.localhost', id: 'fake' })));
    const ids = (await got).getChildren('stanza-id', SID);
    t.equal(ids.length, 1);
    t.not(ids[0].attrs.id, 'fake');
  });
});
