import { spawnSync } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { eventually, startCluster, startPartitionableCluster } from '../helpers/cluster';
import { createClusterDatabase } from '../helpers/databases';
import { nextStanza, xml } from '../helpers/server';

t.test('kill -9 of a node: survivors drop it and its users, store their messages, and take it back when it restarts', async (t) => {
  // The strategies differ above the storage; each runs on one of the two shared databases.
  for (const [strategy, database] of [['broadcast', 'mysql'], ['online-users-caching', 'pgsql']] as const) {
    await t.test(`${strategy} on ${database}`, async (t) => {
      const dbUri = await createClusterDatabase(t, database);
      if (!dbUri) return;
      const cluster = await startCluster(t, { nodes: 3, dbUri, strategy });
      for (const user of ['alice', 'bob', 'carol']) await cluster.addUser(user).catch(() => undefined);
      const rows = await cluster.storage.clusterNodes.list();
      t.same(rows.map((r) => r.hostname).sort(), cluster.nodes.map((n) => n.name).sort(), 'cluster_nodes has a row per node');
      t.ok(rows.every((r) => r.password && r.port > 0 && r.address === '127.0.0.1' && r.version), 'with address, port, password and version');

      // alice (node 1) and carol (node 3) are mutual contacts.
      await cluster.storage.roster.setItem('alice@localhost', { jid: 'carol@localhost', subscription: 'both', groups: [] });
      await cluster.storage.roster.setItem('carol@localhost', { jid: 'alice@localhost', subscription: 'both', groups: [] });
      const alice = await cluster.login(0, 'alice', { resource: 'a' });
      const carolOnline = nextStanza(alice, (s) => s.is('presence') && s.attrs.from === 'carol@localhost/c' && !s.attrs.type);
      await cluster.login(2, 'carol', { resource: 'c' });
      await carolOnline;

      const carolGone = nextStanza(alice, (s) => s.is('presence') && s.attrs.from === 'carol@localhost/c' && s.attrs.type === 'unavailable', 10000);
      const killedAt = Date.now();
      await cluster.nodes[2].kill();
      await carolGone;
      t.ok(Date.now() - killedAt < 10000, `alice sees carol go unavailable (${Date.now() - killedAt} ms)`);
      await eventually('the dead node\'s row is deleted', async () => !(await cluster.storage.clusterNodes.list()).some((r) => r.hostname === cluster.nodes[2].name), 10000);
      t.ok(Date.now() - killedAt < 10000, `its cluster_nodes row is gone within 10 s (${Date.now() - killedAt} ms)`);
      await cluster.waitConnected(0, 2);

      await alice.send(xml('message', { to: 'carol@localhost', type: 'chat' }, xml('body', {}, 'are you there?')));
      await eventually('the message to carol is stored offline', async () => (await cluster.storage.offline.count('carol@localhost')) === 1);
      t.pass('a message to a user of the dead node is stored offline, once');

      await cluster.nodes[2].start();
      await cluster.waitConnected(0, 3);
      await cluster.waitConnected(2, 3);
      const carol = await cluster.login(2, 'carol', { resource: 'c2', presence: false });
      const stored = nextStanza(carol, (s) => s.is('message') && s.getChildText('body') === 'are you there?');
      await carol.send(xml('presence'));
      await stored;
      t.pass('after the restart carol gets the stored message');
      const live = nextStanza(carol, (s) => s.is('message') && s.getChildText('body') === 'welcome back');
      await alice.send(xml('message', { to: 'carol@localhost/c2', type: 'chat' }, xml('body', {}, 'welcome back')));
      await live;
      t.pass('and traffic flows across nodes again');
    });
  }
});

t.test('a node with a wrong --cluster-secret is refused a link', async (t) => {
  const dbUri = await createClusterDatabase(t);
  if (!dbUri) return;
  const cluster = await startCluster(t, {
    nodes: 3,
    dbUri,
    strategy: 'broadcast',
    waitConnected: false,
    nodeArgs: (i) => (i === 2 ? ['--cluster-secret=not-the-right-secret-at-all'] : []),
  });
  await cluster.waitConnected(0, 2);
  await cluster.waitConnected(1, 2);
  await eventually('the refusal is logged', () => /not-authorized/.test(cluster.nodes[0].output + cluster.nodes[1].output + cluster.nodes[2].output), 10000);
  t.match(cluster.nodes[0].output + cluster.nodes[1].output, /cluster link refused by peer.*not-authorized/, 'the good nodes log why the link was refused');
  await cluster.waitConnected(2, 1);
  t.pass('the node with the wrong secret is connected to nobody');
});

t.test('a partitioned link is detected within seconds and heals when the network comes back', async (t) => {
  const dbUri = await createClusterDatabase(t);
  if (!dbUri) return;
  for (const strategy of ['broadcast', 'online-users-caching']) {
    await t.test(strategy, async (t) => {
      const { cluster, proxy } = await startPartitionableCluster(t, { dbUri, strategy });
      for (const user of ['dora', 'emil']) await cluster.addUser(user).catch(() => undefined);
      await cluster.storage.roster.setItem('dora@localhost', { jid: 'emil@localhost', subscription: 'both', groups: [] });
      await cluster.storage.roster.setItem('emil@localhost', { jid: 'dora@localhost', subscription: 'both', groups: [] });
      const dora = await cluster.login(0, 'dora', { resource: 'd' });
      const emilOnline = nextStanza(dora, (s) => s.is('presence') && s.attrs.from === 'emil@localhost/e' && !s.attrs.type);
      const emil = await cluster.login(1, 'emil', { resource: 'e' });
      await emilOnline;

      const emilGone = nextStanza(dora, (s) => s.is('presence') && s.attrs.from === 'emil@localhost/e' && s.attrs.type === 'unavailable', 10000);
      const cutAt = Date.now();
      proxy.forwarding = false;
      await cluster.waitConnected(0, 1, 10000);
      await cluster.waitConnected(1, 1, 10000);
      t.ok(Date.now() - cutAt < 5000, `both sides notice within seconds (${Date.now() - cutAt} ms)`);
      await emilGone;
      t.pass('dora sees emil go unavailable while the link is down');

      const emilBack = nextStanza(dora, (s) => s.is('presence') && s.attrs.from === 'emil@localhost/e' && !s.attrs.type, 15000);
      proxy.forwarding = true;
      await cluster.waitConnected(0, 2, 15000);
      await cluster.waitConnected(1, 2, 15000);
      await emilBack;
      t.pass('after healing, dora sees emil again without anyone logging in');
      const got = nextStanza(emil, (s) => s.is('message') && s.getChildText('body') === 'healed');
      await dora.send(xml('message', { to: 'emil@localhost/e', type: 'chat' }, xml('body', {}, 'healed')));
      await got;
      t.pass('and messages flow again');
    });
  }
});

t.test('xmppctl cluster-nodes shows every live node with its age', async (t) => {
  const dbUri = await createClusterDatabase(t);
  if (!dbUri) return;
  const cluster = await startCluster(t, { nodes: 2, dbUri, strategy: 'broadcast' });
  const result = spawnSync(process.execPath, [path.join(__dirname, '..', '..', 'dist', 'scripts', 'xmppctl.js'), `--user-db-uri=${dbUri}`, 'cluster-nodes'], { encoding: 'utf8' });
  t.equal(result.status, 0, result.stderr);
  for (const node of cluster.nodes) t.match(result.stdout, new RegExp(`${node.name.replace(/\./g, '\\.')}\\s+127\\.0\\.0\\.1:\\d+`));
  t.match(result.stdout, /age/);
  t.match(result.stdout, /\d+\.\ds/);
});

t.test('admins get a message when a node leaves and when it joins again, from one node only', async (t) => {
  const dbUri = await createClusterDatabase(t);
  if (!dbUri) return;
  const cluster = await startCluster(t, { nodes: 3, dbUri, strategy: 'online-users-caching', args: ['--admins=root@localhost'] });
  await cluster.addUser('root').catch(() => undefined);
  const root = await cluster.login(0, 'root');
  const notices: string[] = [];
  root.on('stanza', (s: { is(n: string): boolean; attrs: Record<string, string>; getChildText(n: string): string | null }) => {
    if (s.is('message') && s.attrs.from === 'localhost') notices.push(s.getChildText('body') ?? '');
  });
  const name = cluster.nodes[2].name;
  const left = new RegExp(`${name.replace(/\./g, '\\.')} left`);
  const joined = new RegExp(`${name.replace(/\./g, '\\.')} joined`);
  await cluster.nodes[2].kill();
  await eventually('the admin hears the node left', () => notices.some((n) => left.test(n)));
  await cluster.nodes[2].start();
  await eventually('the admin hears the node joined', () => notices.some((n) => joined.test(n)), 15000);
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.equal(notices.filter((n) => left.test(n)).length, 1, 'one notice, not one per surviving node');
  t.equal(notices.filter((n) => joined.test(n)).length, 1);
});
