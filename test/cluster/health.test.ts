import { eventually, httpGet, startCluster } from '../helpers/cluster';
import { forEachDatabase } from '../helpers/databases';

const WAIT_MS = 30_000;

// --min-cluster-nodes gates readiness while a cluster forms; losing a node afterwards must never
// take the survivors out of a balancer's rotation (that would turn one lost node into an outage).
forEachDatabase('a survivor stays ready when a node of a formed cluster dies', async (t, dbUri) => {
  const cluster = await startCluster(t, { nodes: 2, dbUri, strategy: 'online-users-caching' });
  for (const node of cluster.nodes) t.equal((await httpGet(node.httpPort, '/health/ready')).status, 200, `${node.name} is ready once both are connected`);
  await cluster.nodes[1].kill();
  await eventually('node 1 sees node 2 gone', async () => JSON.parse((await httpGet(cluster.nodes[0].httpPort, '/health')).body).clusterNodes === 1, WAIT_MS);
  const ready = await httpGet(cluster.nodes[0].httpPort, '/health/ready');
  t.equal(ready.status, 200, 'the survivor keeps serving: ready');
  t.equal((await httpGet(cluster.nodes[0].httpPort, '/health')).status, 200, '/health too');
  await cluster.addUser('alice');
  const alice = await cluster.login(0, 'alice');
  t.ok(alice.jid, 'and logins work');
}, ['pgsql']);
