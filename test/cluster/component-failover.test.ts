import t from 'tap';
import type { Element } from 'ltx';
import { rendezvousOwner } from '../../server/cluster/ownership';
import { ownerKey } from '../../components/pubsub';
import { eventually, startCluster } from '../helpers/cluster';
import { createClusterDatabase } from '../helpers/databases';
import { MUC_ARGS, createRoom, heard, isFromRoom, say } from '../helpers/muc';
import { PUBSUB, createNode, entry } from '../helpers/pubsub';
import { collect, xml } from '../helpers/server';

const WAIT_MS = 30_000;
const LINES = 10;

/** The first `prefix<i>` whose owner by the hash over `nodes` is `owner`. */
function itemOwnedBy(owner: string, nodes: string[], prefix: string, key: (name: string) => string): string {
  for (let i = 0; ; i++) if (rendezvousOwner(key(`${prefix}${i}`), nodes) === owner) return `${prefix}${i}`;
}

// A stanza for a room or a pubsub node goes over the cluster link to the node that serves it. When
// that node dies before it took the stanza, the stanza is not lost with it: the node it came in on
// handles it again, so it reaches the item's next owner or its sender gets an error.
t.test('stanzas on their way to a component\'s node when it dies are answered, not lost', async (t) => {
  const dbUri = await createClusterDatabase(t);
  if (!dbUri) return;
  // Links that do not time out while node 2 is frozen: node 1 learns of its death from the kill.
  const cluster = await startCluster(t, {
    nodes: 2, dbUri, strategy: 'broadcast',
    args: [...MUC_ARGS, '--comp-name-2=pubsub', '--comp-class-2=pubsub', '--cluster-link-heartbeat=5', '--cluster-link-timeout=60'],
  });
  await cluster.addUser('alice');
  const names = cluster.nodes.map((n) => n.name).sort();
  const victim = cluster.nodes[1];
  const room = `${itemOwnedBy(victim.name, names, 'lounge', (r) => `${r}@muc.localhost`)}@muc.localhost`;
  const feed = itemOwnedBy(victim.name, names, 'feed', (n) => ownerKey('pubsub.localhost', n));

  const alice = await cluster.login(0, 'alice', { resource: 'a' });
  await createRoom(alice, `${room}/Alice`);
  await createNode(alice, 'pubsub.localhost', feed);
  const echo = heard(alice, room, 'before');
  await say(alice, room, 'before');
  await echo;
  t.pass(`node 2 serves ${room} and the pubsub node ${feed}`);

  const seen = collect(alice);
  victim.freeze();
  const lines = Array.from({ length: LINES }, (_, i) => `held ${i}`);
  for (const line of lines) await say(alice, room, line);
  await alice.send(xml('iq', { type: 'set', to: 'pubsub.localhost', id: 'held-publish' }, xml('pubsub', { xmlns: PUBSUB }, xml('publish', { node: feed }, xml('item', { id: 'held' }, entry('held'))))));
  await eventually('node 1 sent them all to node 2, which has taken none', async () => {
    const link = ((await cluster.status(0)).cluster?.links ?? []).find((l: { node: string }) => l.node === victim.name);
    return (link?.unacknowledged ?? 0) >= LINES + 1;
  }, WAIT_MS);
  await victim.kill();

  // Each line: the room's echo, or an error carrying the line back (a temporary room dies with its node).
  const answers = (line: string) => seen.filter((s) => s.is('message') && isFromRoom(s, room) && s.getChildText('body') === line);
  await eventually('every line is answered', () => lines.every((line) => answers(line).length > 0), WAIT_MS);
  for (const line of lines) {
    const [answer, ...more] = answers(line);
    t.equal(more.length, 0, `${line}: answered once`);
    t.ok(answer.attrs.type === 'groupchat' || answer.getChild('error')?.getChild('item-not-found'), `${line}: ${answer.attrs.type === 'error' ? 'an error, item-not-found' : 'echoed'}`);
  }
  // The pubsub node lives in the database: its new owner takes the publication.
  await eventually('the publication is answered', () => seen.some((s) => s.is('iq') && s.attrs.id === 'held-publish'), WAIT_MS);
  const result = seen.find((s) => s.is('iq') && s.attrs.id === 'held-publish') as Element;
  t.equal(result.attrs.type, 'result', `the publication went through on the survivor: ${result.toString()}`);
  const owner = (await cluster.storage.knex('component_owners').where({ service: 'pubsub', item: ownerKey('pubsub.localhost', feed) }).first('node')) as { node: string };
  t.equal(owner.node, cluster.nodes[0].name, 'the surviving node serves the pubsub node now');
});
