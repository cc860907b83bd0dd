import t from 'tap';
import { fieldValues, noteOf, runAdminCommand } from '../helpers/adhoc';
import { eventually, startCluster } from '../helpers/cluster';
import { createClusterDatabase } from '../helpers/databases';
import { NumberedTraffic } from '../helpers/numbered-traffic';
import { nextStanza, xml, type XmppClient } from '../helpers/server';

/** Resolves with the stream error condition that ends `client`'s stream. */
function streamError(client: XmppClient): Promise<string> {
  return new Promise((resolve) => client.on('error', (err: Error & { condition?: string }) => resolve(err.condition ?? err.message)));
}

// XEP-0133 through the cluster: an admin on node 1 sees and acts on sessions of nodes 2 and 3.
t.test('admin commands act on every node of the cluster', async (t) => {
  const dbUri = await createClusterDatabase(t);
  if (!dbUri) return;
  const cluster = await startCluster(t, { nodes: 3, dbUri, strategy: 'online-users-caching', args: ['--admins=boss@localhost'] });
  for (const user of ['boss', 'alice', 'bob']) await cluster.addUser(user);
  const boss = await cluster.login(0, 'boss', { resource: 'console' });
  const alice = await cluster.login(1, 'alice', { resource: 'phone' });
  const bob = await cluster.login(2, 'bob', { resource: 'laptop' });

  t.same(fieldValues(await runAdminCommand(boss, 'get-online-users-list', { max_items: 'none' }), 'onlineuserjids'),
    ['alice@localhost', 'bob@localhost', 'boss@localhost'], 'online users of all three nodes');
  t.same(fieldValues(await runAdminCommand(boss, 'get-online-users-num'), 'onlineusersnum'), ['3']);
  const stats = await runAdminCommand(boss, 'user-stats', { accountjid: 'bob@localhost' });
  t.match(fieldValues(stats, 'sessions'), [new RegExp(`^bob@localhost/laptop ${cluster.nodes[2].name.replace(/\./g, '\\.')} tcp 127\\.0\\.0\\.1:\\d+ `)],
    'user-stats names the node the session is on');

  const heard = [nextStanza(alice, (s) => s.is('message') && s.attrs.type === 'headline'), nextStanza(bob, (s) => s.is('message') && s.attrs.type === 'headline')];
  t.equal(noteOf(await runAdminCommand(boss, 'announce', { announcement: 'Hello, everyone on every node.' })), 'info: Sent to 3 online session(s).');
  for (const message of await Promise.all(heard)) t.equal(message.getChildText('body'), 'Hello, everyone on every node.');

  const bobClosed = streamError(bob);
  t.equal(noteOf(await runAdminCommand(boss, 'end-user-session', { accountjids: 'bob@localhost/laptop' })), 'info: Ended 1 session(s).');
  t.equal(await bobClosed, 'policy-violation', 'a session on node 3 ended from node 1');

  const aliceClosed = streamError(alice);
  t.equal(noteOf(await runAdminCommand(boss, 'disable-user', { accountjids: 'alice@localhost' })), 'info: Disabled alice@localhost.');
  t.equal(await aliceClosed, 'policy-violation', 'disabling ends the session on node 2');
  await t.rejects(cluster.login(2, 'alice'), /account-disabled/, 'and no node lets the account in');
  await runAdminCommand(boss, 'reenable-user', { accountjids: 'alice@localhost' });
  const again = await cluster.login(2, 'alice', { resource: 'again' });

  const deleted = streamError(again);
  t.equal(noteOf(await runAdminCommand(boss, 'delete-user', { accountjids: 'alice@localhost' })), 'info: Deleted alice@localhost.');
  t.equal(await deleted, 'policy-violation', 'deleting ends the session on node 3');
  t.equal(await cluster.storage.users.get('alice@localhost'), undefined);
  t.same(fieldValues(await runAdminCommand(boss, 'get-online-users-list', { max_items: 'none' }), 'onlineuserjids'), ['boss@localhost']);
});

// An admin ending a session (XEP-0133 end-user-session, xmppctl kick) must not cost the user any
// message in flight: what the session had not had acknowledged, and what comes after, is stored
// offline and delivered at the next login.
t.test('a session an admin ends loses none of the messages sent to it', async (t) => {
  const dbUri = await createClusterDatabase(t, 'pgsql');
  if (!dbUri) return;
  const cluster = await startCluster(t, { nodes: 3, dbUri, strategy: 'broadcast', args: ['--admins=boss@localhost'] });
  for (const user of ['boss', 'carol', 'dave']) await cluster.addUser(user);
  const boss = await cluster.login(0, 'boss', { resource: 'console' });
  const carol = await cluster.login(1, 'carol', { resource: 'desk' });
  const dave = await cluster.login(2, 'dave', { resource: 'phone' });
  const traffic = new NumberedTraffic([{ sender: carol, receiver: dave, to: 'dave@localhost/phone' }]);
  traffic.start(200);
  await eventually('dave gets messages', () => traffic.live.size >= 200, 30_000);
  const ended = streamError(dave);
  t.equal(noteOf(await runAdminCommand(boss, 'end-user-session', { accountjids: 'dave@localhost' })), 'info: Ended 1 session(s).', 'ended from node 1, on node 3');
  await ended;
  const sentAtEnd = traffic.sent.size;
  await eventually('carol goes on sending while dave is away', () => traffic.sent.size >= sentAtEnd + 200, 30_000);
  traffic.stop();

  const back = await cluster.login(0, 'dave', { resource: 'phone', presence: false });
  traffic.watchReceiver(back);
  await back.send(xml('presence'));
  await eventually('every message is accounted for', () => traffic.unaccounted().length === 0, 30_000).catch(() => undefined);
  t.comment(traffic.summary());
  t.same(traffic.unaccounted(), [], 'none lost: each was delivered live, or from offline storage at the next login, or bounced');
  t.ok(traffic.offline.size >= 200, `the messages sent while dave was away came from offline storage (${traffic.offline.size})`);
  t.equal(traffic.bounced.size, 0, 'none bounced');
});
