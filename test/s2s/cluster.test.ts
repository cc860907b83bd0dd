import type { Element } from 'ltx';
import t from 'tap';
import { deriveScramCredentials } from '../../server/c2s/sasl/scram';
import { connectClient, type XmppClient } from '../helpers/client';
import { eventually, httpGet, startCluster } from '../helpers/cluster';
import { createClusterDatabase } from '../helpers/databases';
import { prosodyMissing, startProsody } from '../helpers/prosody';
import { announceCaps } from '../helpers/caps';
import { PUBSUB_EVENT, nextEvent, publish } from '../helpers/pubsub';
import { PASSWORD, freePort, nextStanza, xml } from '../helpers/server';
import { subscribe } from '../helpers/subscriptions';

const WAIT_MS = 30_000;
/** Our cluster's domain: the address its first node takes server-to-server connections on (5269). */
const DOMAIN = '127.0.0.1';
const PROSODY = '127.0.0.7';

// Federation from every node of a cluster: Prosody connects to one node (the domain's address),
// which routes its stanzas to our users wherever they are; each node opens its own stream to
// Prosody, whose dialback check lands on the first node, which verifies keys the others made (the
// dialback secret is derived from the shared cluster secret).
t.test('federation on a three-node cluster: Prosody reaches users on every node, and every node reaches Prosody', async (t) => {
  const missing = prosodyMissing();
  if (missing) {
    t.skip(`Prosody interop: ${missing}`, () => undefined);
    return;
  }
  const dbUri = await createClusterDatabase(t);
  if (!dbUri) return;
  const prosody = await startProsody(t, PROSODY);
  const s2sPorts = [5269, await freePort(), await freePort()];
  const cluster = await startCluster(t, {
    nodes: 3, dbUri, strategy: 'online-users-caching',
    args: [`--virt-hosts=${DOMAIN}`],
    nodeArgs: (i) => [`--s2s-ports=${s2sPorts[i]}`],
  });
  await prosody.register('petra', 'petra-password');
  const petra = await prosody.login('petra', 'petra-password', 'laptop');
  t.teardown(() => petra.stop().catch(() => undefined));
  const users: XmppClient[] = [];
  for (const node of cluster.nodes) {
    const local = `user${node.index + 1}`;
    await cluster.storage.users.create(`${local}@${DOMAIN}`, deriveScramCredentials(PASSWORD, 4096));
    const client = await connectClient({ service: `xmpp://127.0.0.1:${node.c2sPort}`, domain: DOMAIN, local, password: PASSWORD, resource: 'r' });
    t.teardown(() => client.stop().catch(() => undefined));
    users.push(client);
  }

  await t.test('Prosody\'s messages reach our users on all three nodes', async (t) => {
    for (const [i, user] of users.entries()) {
      const heard = nextStanza(user, (s) => s.is('message') && s.getChildText('body') === `to node ${i + 1}`, WAIT_MS);
      await petra.send(xml('message', { to: `user${i + 1}@${DOMAIN}`, type: 'chat' }, xml('body', {}, `to node ${i + 1}`)));
      t.equal((await heard).attrs.from, `petra@${PROSODY}/laptop`, `user${i + 1} (node ${i + 1}) has it`);
    }
  });

  await t.test('users on every node reach Prosody, each node on its own stream', async (t) => {
    const heard = new Set<string>();
    petra.on('stanza', (s: Element) => {
      if (s.is('message') && s.getChildText('body')?.startsWith('from node')) heard.add(s.attrs.from as string);
    });
    for (const [i, user] of users.entries()) await user.send(xml('message', { to: `petra@${PROSODY}`, type: 'chat' }, xml('body', {}, `from node ${i + 1}`)));
    const deadline = Date.now() + WAIT_MS;
    while (heard.size < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    t.same([...heard].sort(), [1, 2, 3].map((i) => `user${i}@${DOMAIN}/r`), 'Prosody delivered all three');
    for (const node of cluster.nodes) {
      const status = await cluster.status(node.index);
      t.same((status.federation?.outgoing ?? []).map((o: { remote: string; state: string }) => [o.remote, o.state]), [[PROSODY, 'ready']], `node ${node.index + 1} has its own stream to Prosody`);
    }
    const metrics = await httpGet(cluster.nodes[0].httpPort, '/metrics');
    t.match(metrics.body, new RegExp(`xmpp_s2s_streams\\{remote="${PROSODY.replace(/\./g, '\\.')}",direction="in"[^}]*\\} [1-9]`), 'node 1 counts Prosody\'s incoming stream');
    t.match(metrics.body, /xmpp_s2s_stanzas_total\{outcome="received"[^}]*\} [1-9]/, 'and the stanzas it received');
  });

  // PEP across domains on a cluster: Prosody's presence comes in on node 1, yet node 3, where the
  // publisher is, learns petra's caps (its query leaves from user3's session, so the answer comes back
  // to node 3) and sends her the event.
  await t.test('a Prosody contact gets the PEP events of a user on another node than the one Prosody connects to', async (t) => {
    const TUNE = 'http://jabber.org/protocol/tune';
    const user3 = users[2];
    for (const client of [user3, petra]) await client.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:roster' })), WAIT_MS);
    await subscribe(petra, user3, WAIT_MS);
    await subscribe(user3, petra, WAIT_MS);
    const event = nextEvent(petra, TUNE, () => true, WAIT_MS);
    const caps = await announceCaps(petra, [`${TUNE}+notify`]);
    await caps.queried;
    await eventually('petra\'s caps verified over s2s', async () => (await cluster.storage.caps.get(caps.ver)) !== undefined, WAIT_MS);
    await publish(user3, undefined, TUNE, xml('tune', { xmlns: TUNE }, xml('title', {}, 'From node 3')));
    const message = await event;
    t.equal(message.attrs.from, `user3@${DOMAIN}`);
    t.equal(message.getChild('event', PUBSUB_EVENT)?.getChild('items')?.getChild('item')?.getChild('tune', TUNE)?.getChildText('title'), 'From node 3');
  });
});
