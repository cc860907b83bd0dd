import { eventually, httpGet, startCluster } from '../helpers/cluster';
import { forEachDatabase } from '../helpers/databases';

const WAIT_MS = 30_000;

/** This node's runs of `chore`, from its /metrics. */
async function runs(port: number, chore: string): Promise<number> {
  const body = (await httpGet(port, '/metrics')).body;
  const match = new RegExp(`xmpp_chore_runs_total\\{chore="${chore}"[^}]*\\} (\\d+)`).exec(body);
  return Number(match?.[1] ?? 0);
}

// DESIGN "jobs that must run once": archive expiry runs on the node holding the lease, on no other,
// and moves to a survivor when that node dies.
forEachDatabase('archive expiry runs on exactly one node of three, and moves when that node dies', async (t, dbUri) => {
  const cluster = await startCluster(t, { nodes: 3, dbUri, strategy: 'online-users-caching', args: ['--chore-interval=0.5', '--mam-retention=3600'] });
  await cluster.addUser('alice');
  const old = (id: string) => ({
    user: 'alice@localhost', stanza_id: id, with_jid: 'bob@localhost', with_resource: null, direction: 'in',
    created_at: new Date(Date.now() - 2 * 3_600_000), stanza: `<message from='bob@localhost/x' to='alice@localhost' type='chat'><body>${id}</body></message>`,
  });
  const fresh = { ...old('fresh'), created_at: new Date() };
  await cluster.storage.knex('archive_messages').insert([old('old-1'), old('old-2'), fresh]);
  const left = async () => (await cluster.storage.knex('archive_messages').where({ user: 'alice@localhost' }).select('stanza_id')).map((r: { stanza_id: string }) => r.stanza_id);
  await eventually('the expired messages are deleted', async () => (await left()).length === 1, WAIT_MS);
  t.same(await left(), ['fresh'], 'only what is older than --mam-retention');

  const counts = async () => Promise.all(cluster.nodes.map((n) => (n.process?.exitCode === null && n.process.signalCode === null ? runs(n.httpPort, 'mam-expiry') : Promise.resolve(-1))));
  await eventually('the holder ran it several times', async () => Math.max(...(await counts())) >= 4, WAIT_MS);
  const first = await counts();
  t.equal(first.filter((n) => n > 0).length, 1, `one node ran it (${first.join(', ')})`);
  const holder = first.findIndex((n) => n > 0);
  t.equal(await cluster.storage.leases.holder('mam-expiry'), cluster.nodes[holder].name, 'the lease names it');

  await cluster.nodes[holder].kill();
  await cluster.storage.knex('archive_messages').insert([old('old-3')]);
  await eventually('a survivor took the chore over', async () => (await left()).length === 1, WAIT_MS);
  const after = await counts();
  const survivors = after.map((n, i) => (i === holder ? 0 : n));
  t.equal(survivors.filter((n) => n > 0).length, 1, `one survivor runs it now (${after.join(', ')})`);
  t.not(await cluster.storage.leases.holder('mam-expiry'), cluster.nodes[holder].name);
}, ['mysql']);
