import t from 'tap';
import { eventually, httpGet, startCluster } from '../helpers/cluster';
import { ctl } from '../helpers/xmppctl';
import { createClusterDatabase } from '../helpers/databases';
import type { XmppClient } from '../helpers/server';

function streamError(client: XmppClient): Promise<string> {
  return new Promise((resolve) => client.on('error', (err: Error & { condition?: string }) => resolve(err.condition ?? err.message)));
}

// xmppctl on one node's host reaches the node through its control socket, and the node acts for
// the whole cluster: sessions and kicks cover the other node too.
t.test('xmppctl sessions, kick, stats, reload and drain through a node of a two-node cluster', async (t) => {
  const dbUri = await createClusterDatabase(t);
  if (!dbUri) return;
  const cluster = await startCluster(t, { nodes: 2, dbUri, strategy: 'online-users-caching' });
  for (const user of ['alice', 'bob']) await cluster.addUser(user);
  const alice = await cluster.login(0, 'alice', { resource: 'phone' });
  const bob = await cluster.login(1, 'bob', { resource: 'laptop' });

  const listed = await ctl(cluster, 0, 'sessions');
  t.equal(listed.code, 0, listed.err.join('\n'));
  t.match(listed.out[0], /^jid +node +transport +address +since +presence$/);
  t.match(listed.out[1], new RegExp(`^alice@localhost/phone +${cluster.nodes[0].name} +tcp +127\\.0\\.0\\.1:\\d+ +\\d{4}-\\S+ +available$`));
  t.match(listed.out[2], new RegExp(`^bob@localhost/laptop +${cluster.nodes[1].name} +tcp `), 'a session of the other node');
  t.equal(listed.out[3], '2 session(s)');
  const one = await ctl(cluster, 0, 'sessions', 'bob@localhost');
  t.same(one.out.slice(1), [one.out[1], '1 session(s)']);
  t.match(one.out[1], /^bob@localhost\/laptop /);

  const stats = await ctl(cluster, 0, 'stats');
  t.equal(stats.code, 0, stats.err.join('\n'));
  t.match(stats.out[1], /^localhost +2 +0 +2 +2$/, 'registered, disabled, online users, sessions');
  t.same(stats.out.slice(2), [`node ${cluster.nodes[0].name}: 1 session(s)`, `node ${cluster.nodes[1].name}: 1 session(s)`]);

  const bobClosed = streamError(bob);
  const kicked = await ctl(cluster, 0, 'kick', 'bob@localhost/laptop');
  t.equal(kicked.code, 0, kicked.err.join('\n'));
  t.same(kicked.out, [`ended bob@localhost/laptop on ${cluster.nodes[1].name}`]);
  t.equal(await bobClosed, 'policy-violation', 'the session on the other node ended');
  const again = await ctl(cluster, 0, 'kick', 'bob@localhost');
  t.equal(again.code, 1);
  t.same(again.err, ['xmppctl: no session of bob@localhost is online']);

  const reloaded = await ctl(cluster, 1, 'reload');
  t.equal(reloaded.code, 0, reloaded.err.join('\n'));
  t.same(reloaded.out, ['configuration reloaded; changed: nothing else']);
  await eventually('the node logs the reload', () => /configuration reloaded \(xmppctl reload\)/.test(cluster.nodes[1].output));

  t.equal((await httpGet(cluster.nodes[1].httpPort, '/health/ready')).status, 200);
  const drained = await ctl(cluster, 1, 'drain');
  t.equal(drained.code, 0, drained.err.join('\n'));
  const ready = await httpGet(cluster.nodes[1].httpPort, '/health/ready');
  t.equal(ready.status, 503, 'the drained node is not ready');
  t.match(ready.body, /draining/);
  t.equal((await httpGet(cluster.nodes[0].httpPort, '/health/ready')).status, 200, 'the other node is');
  const stillThere = await cluster.login(1, 'bob', { resource: 'back' });
  t.ok(stillThere.jid, 'a draining node still serves');
  await Promise.all([alice.stop(), stillThere.stop()]);

  // A node killed leaves its socket file behind; started again, it takes the socket over.
  await cluster.nodes[0].kill();
  const down = await ctl(cluster, 0, 'sessions');
  t.equal(down.code, 1);
  t.match(down.err[0], /^xmppctl: cannot reach the node's control socket .*xmppd\.sock: no node is running with this configuration$/);
  await cluster.nodes[0].start();
  await cluster.waitConnected(0, 2);
  t.equal((await ctl(cluster, 0, 'sessions')).code, 0, 'a stale socket file is replaced');
});
