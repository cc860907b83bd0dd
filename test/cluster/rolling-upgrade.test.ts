import t from 'tap';
import { MAIN, startCluster } from '../helpers/cluster';
import { createClusterDatabase } from '../helpers/databases';
import { PREVIOUS_RELEASE, buildPreviousRelease } from '../helpers/previous-release';
import { rollingRestart } from '../helpers/rolling';
import { SERVER_VERSION } from '../../server/version';

// The upgrade itself: three nodes of the previous release (link protocol 2.0) are replaced one by
// one by this version (2.1) under the same traffic; for a while the cluster mixes both.
t.test('a rolling upgrade from the previous release under live traffic loses nothing', async (t) => {
  const previous = buildPreviousRelease();
  if (!previous.main) {
    t.skip(`rolling upgrade: ${previous.reason}`, () => undefined);
    return;
  }
  const dbUri = await createClusterDatabase(t, 'pgsql');
  if (!dbUri) return;
  const cluster = await startCluster(t, { nodes: 3, dbUri, strategy: 'broadcast', args: ['--drain-grace=1'], main: previous.main });
  const versions = async () => ((await cluster.storage.knex('cluster_nodes').orderBy('hostname').select('version')) as { version: string }[]).map((r) => r.version);
  t.same(await versions(), [PREVIOUS_RELEASE.version, PREVIOUS_RELEASE.version, PREVIOUS_RELEASE.version], `three nodes of ${PREVIOUS_RELEASE.version}`);
  await rollingRestart(t, cluster, MAIN);
  t.same(await versions(), [SERVER_VERSION, SERVER_VERSION, SERVER_VERSION], `three nodes of ${SERVER_VERSION}`);
});
