import t from 'tap';
import { eventually, startCluster } from '../helpers/cluster';
import { createClusterDatabase } from '../helpers/databases';
import { RawConnection, STREAM_OPEN } from '../helpers/server';

/** A connection from `from` that opens a stream: the connection, and whether the server refused it (and why). */
async function openStream(port: number, from: string): Promise<{ conn: RawConnection; refused: boolean; text: string }> {
  const conn = await RawConnection.connect(port, false, from);
  conn.write(STREAM_OPEN);
  const text = await conn.waitFor(/<\/stream:features>|<\/stream:stream>/, 15_000).catch((err) => String(err));
  return { conn, refused: /policy-violation/.test(text), text };
}

// A per-node limit is bypassed by spreading connections over the nodes; ours count over the cluster.
t.test('--max-connections-per-ip counts an address\'s connections on every node', async (t) => {
  const dbUri = await createClusterDatabase(t);
  if (!dbUri) return;
  const cluster = await startCluster(t, {
    nodes: 3, dbUri, strategy: 'broadcast',
    args: ['--max-connections-per-ip=6', '--connection-rate-per-ip=0', '--connection-limits-exempt=10.9.9.9'],
  });
  const held: RawConnection[][] = [[], [], []];
  t.teardown(() => held.flat().forEach((c) => c.destroy()));
  for (const node of cluster.nodes) {
    for (let i = 0; i < 2; i++) {
      const { conn, refused } = await openStream(node.c2sPort, '127.0.0.5');
      t.notOk(refused, `connection ${i + 1} from 127.0.0.5 on node ${node.index + 1} is served`);
      held[node.index].push(conn);
    }
  }
  // Each node holds 2, under the limit of 6 on its own; together they hold 6.
  let refusal = '';
  await eventually('a seventh connection, on any node, is refused once the nodes have told each other', async () => {
    const seventh = await openStream(cluster.nodes[2].c2sPort, '127.0.0.5');
    seventh.conn.destroy();
    refusal = seventh.text;
    return seventh.refused;
  }, 20_000);
  t.match(refusal, /more than 6 connections from 127\.0\.0\.5 \(on all cluster nodes\)/, 'refused for the cluster-wide count');
  const other = await openStream(cluster.nodes[2].c2sPort, '127.0.0.6');
  t.notOk(other.refused, 'another address is served');
  other.conn.destroy();

  for (const conn of held[0].splice(0)) conn.destroy();
  await eventually('once node 1\'s connections close, node 3 serves the address again', async () => {
    const again = await openStream(cluster.nodes[2].c2sPort, '127.0.0.5');
    again.conn.destroy();
    return !again.refused;
  }, 20_000);
  t.pass('served again');
});
