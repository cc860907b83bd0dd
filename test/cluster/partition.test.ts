import t from 'tap';
import { eventually, startPartitionableCluster } from '../helpers/cluster';
import { createClusterDatabase } from '../helpers/databases';
import { NumberedTraffic, type Pair } from '../helpers/numbered-traffic';

/** Messages per second across the partitioned link [300]. */
const RATE = 300;

// The link between two nodes is cut (bytes vanish both ways) while users on one node write to
// users on the other, who stay online throughout; then it heals. What could not cross was stored
// offline; it must reach the receivers as soon as the link is back, not at their next login, and
// only once (what crossed but whose acknowledgement did not is recognised when it comes back).
t.test('a partition parks nothing for users who stay online, loses nothing and duplicates nothing', async (t) => {
  const dbUri = await createClusterDatabase(t);
  if (!dbUri) return;
  for (const strategy of ['broadcast', 'online-users-caching']) {
    await t.test(strategy, async (t) => {
      const { cluster, proxy } = await startPartitionableCluster(t, { dbUri, strategy });
      const tag = strategy === 'broadcast' ? 'pb' : 'pc';
      const pairs: Pair[] = [];
      for (let i = 0; i < 4; i++) {
        await cluster.addUser(`${tag}s${i}`);
        await cluster.addUser(`${tag}r${i}`);
        const receiver = await cluster.login(1, `${tag}r${i}`, { resource: 'phone' });
        const sender = await cluster.login(0, `${tag}s${i}`, { resource: 'desk' });
        pairs.push({ sender, receiver, to: `${tag}r${i}@localhost/phone` });
      }
      const traffic = new NumberedTraffic(pairs);
      traffic.start(RATE);
      await eventually('traffic flows', () => traffic.live.size >= 300, 30000);
      proxy.forwarding = false;
      await cluster.waitConnected(0, 1, 15000);
      await cluster.waitConnected(1, 1, 15000);
      const cut = traffic.sent.size;
      await eventually('traffic goes on during the partition', () => traffic.sent.size >= cut + RATE * 2, 30000);
      proxy.forwarding = true;
      await cluster.waitConnected(0, 2, 30000);
      await cluster.waitConnected(1, 2, 30000);
      const healed = traffic.sent.size;
      await eventually('traffic goes on after healing', () => traffic.sent.size >= healed + RATE, 30000);
      traffic.stop();

      await eventually('every message reaches its receiver', () => traffic.unaccounted().length === 0, 30000).catch(() => undefined);
      t.comment(traffic.summary());
      t.equal(traffic.unaccounted().length, 0, 'nothing lost, nothing parked: receivers got everything without logging in again');
      t.equal(traffic.duplicates().length, 0, 'nothing delivered twice: what the far side delivered before its acknowledgement was cut is not delivered again from storage');
      t.ok(traffic.offline.size > 0, 'what could not cross was stored, then delivered when the link came back');
      let stored = 0;
      for (let i = 0; i < 4; i++) stored += await cluster.storage.offline.count(`${tag}r${i}@localhost`);
      t.equal(stored, 0, 'offline storage holds nothing for the online receivers');
    });
  }
});
