import t from 'tap';
import { eventually, startCluster } from '../helpers/cluster';
import { NumberedTraffic, type Pair } from '../helpers/numbered-traffic';
import { startPrivateMariaDb } from '../helpers/private-mariadb';
import { startPrivatePostgres } from '../helpers/private-postgres';

/** Messages per second during the outage test: chat between users online throughout [400]. */
const RATE = 400;

// The cluster's database (a private MariaDB or PostgreSQL, never a shared one) is killed for longer
// than the node timeout while users chat across nodes, then comes back. Every cluster_nodes row looks
// expired then; a healthy, heartbeating link must not be dropped for it, and nothing may be lost
// or parked in offline storage for receivers who were online the whole time.
// The strategies differ above the storage: each runs on one of the two servers.
const SERVERS = [
  { name: 'MariaDB', start: startPrivateMariaDb, strategies: ['broadcast'] },
  { name: 'PostgreSQL', start: startPrivatePostgres, strategies: ['online-users-caching'] },
];

t.test('a database outage drops no healthy link, loses nothing and parks nothing', async (t) => {
  for (const server of SERVERS) for (const strategy of server.strategies) {
    await t.test(`${server.name}, ${strategy}`, async (t) => {
      const db = await server.start(t);
      if (!db) return;
      const cluster = await startCluster(t, { nodes: 3, dbUri: `${db.uri}/xmpp_outage`, strategy });
      const pairs: Pair[] = [];
      for (let i = 0; i < 6; i++) {
        await cluster.addUser(`os${i}`);
        await cluster.addUser(`or${i}`);
        const receiver = await cluster.login((i + 1) % 3, `or${i}`, { resource: 'phone' });
        const sender = await cluster.login(i % 3, `os${i}`, { resource: 'desk' });
        pairs.push({ sender, receiver, to: `or${i}@localhost/phone` });
      }
      const traffic = new NumberedTraffic(pairs);
      const dropsBefore = await Promise.all([0, 1, 2].map(async (i) => (await cluster.status(i)).cluster.linkDrops as number));

      traffic.start(RATE);
      await eventually('traffic flows', () => traffic.sent.size >= 500, 30000);
      await db.kill();
      // Longer than the node timeout (2 s): every row is stale when the database returns.
      const down = traffic.sent.size;
      await eventually('traffic goes on without the database', () => traffic.sent.size >= down + RATE * 5 && traffic.live.size >= down, 60000);
      await db.start();
      await eventually('the registry is written again', async () => (await cluster.storage.clusterNodes.list().catch(() => [])).every((row) => Date.now() - row.lastUpdate.getTime() < 1500), 60000);
      const back = traffic.sent.size;
      await eventually('traffic goes on after the outage', () => traffic.sent.size >= back + RATE * 2, 60000);
      traffic.stop();

      await eventually('every message is accounted for', () => traffic.unaccounted().length === 0, 30000).catch(() => undefined);
      t.comment(traffic.summary());
      t.equal(traffic.unaccounted().length, 0, 'nothing lost');
      t.equal(traffic.duplicates().length, 0, 'nothing delivered twice');
      t.equal(traffic.offline.size, 0, 'nothing delivered late from offline storage: receivers were online throughout');
      const drops = await Promise.all([0, 1, 2].map(async (i) => (await cluster.status(i)).cluster.linkDrops as number));
      t.same(drops, dropsBefore, 'no link was dropped');
      t.notMatch(cluster.nodes.map((n) => n.output).join('\n'), /cluster node disconnected/, 'no node saw a peer disconnect');
      for (let i = 0; i < 3; i++) await cluster.waitConnected(i, 3);
    });
  }
});
