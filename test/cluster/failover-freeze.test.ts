import t from 'tap';
import { createClusterDatabase } from '../helpers/databases';
import { OFFERED_RATE, VICTIM, sentAtLeast, startFailoverCluster } from '../helpers/failover-traffic';
import { eventually } from '../helpers/cluster';

// Node 3 is frozen with SIGSTOP for longer than the link timeout while numbered traffic flows,
// most of it to node 3's users, then thawed. Its clients stay connected throughout, so every
// message must reach them, live or from offline storage, without their logging in again
// (nothing parked for an online user), exactly once; and node 3 must not deliver late what its
// peers already re-routed.
t.test('SIGSTOP of a node beyond the link timeout under load: nothing lost, nothing twice, nothing parked', async (t) => {
  const dbUri = await createClusterDatabase(t);
  if (!dbUri) return;
  for (const strategy of ['broadcast', 'online-users-caching']) {
    await t.test(strategy, async (t) => {
      const victim = VICTIM;
      const tag = strategy === 'broadcast' ? 'fb' : 'fc';
      const { cluster, traffic } = await startFailoverCluster(t, dbUri, strategy, tag);

      traffic.start(OFFERED_RATE);
      await sentAtLeast(traffic, 2500);
      cluster.nodes[victim].freeze();
      // The survivors notice (link timeout 1.5 s) and traffic goes on for a while without node 3.
      await cluster.waitConnected(0, 2, 30000);
      await cluster.waitConnected(1, 2, 30000);
      await sentAtLeast(traffic, traffic.sent.size + 3000);
      cluster.nodes[victim].thaw();
      for (let i = 0; i < 3; i++) await cluster.waitConnected(i, 3, 30000);
      await sentAtLeast(traffic, traffic.sent.size + 1500);
      traffic.stop();
      t.ok(traffic.offeredRate >= 1000, `at least 1000 msgs/s offered (${Math.round(traffic.offeredRate)}/s)`);

      await eventually('every message reaches its receiver, still online, or its sender', () => traffic.unaccounted().length === 0, 60000).catch(() => undefined);
      t.comment(traffic.summary());
      t.equal(traffic.unaccounted().length, 0, 'sent = delivered + bounced, with no new login: nothing lost, nothing parked');
      t.equal(traffic.duplicates().length, 0, 'nothing delivered twice (live and from offline storage)');
      let stored = 0;
      for (let i = 0; i < 20; i++) stored += await cluster.storage.offline.count(`${tag}r${i}@localhost`);
      t.equal(stored, 0, 'no message left in offline storage for an online user');
    });
  }
});
