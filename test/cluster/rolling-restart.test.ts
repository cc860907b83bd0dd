import t from 'tap';
import { startCluster } from '../helpers/cluster';
import { createClusterDatabase } from '../helpers/databases';
import { rollingRestart } from '../helpers/rolling';

t.test('a rolling restart of three nodes under live traffic loses nothing, and every client comes back', async (t) => {
  const dbUri = await createClusterDatabase(t);
  if (!dbUri) return;
  const cluster = await startCluster(t, { nodes: 3, dbUri, strategy: 'online-users-caching', args: ['--drain-grace=1', '--debug=cluster,delivery'] });
  await rollingRestart(t, cluster);
});
