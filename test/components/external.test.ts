import t from 'tap';
import { component } from '@xmpp/component';
import { eventually, startCluster } from '../helpers/cluster';
import { createClusterDatabase } from '../helpers/databases';
import { echoComponent } from '../helpers/external-component';
import { freePort, nextStanza, startTestServer, xml, type XmppClient } from '../helpers/server';

const WAIT_MS = 30_000;
const SECRET = 'bridge-secret-123';
const args = (port: number) => ['--comp-name-1=bridge', '--comp-class-1=external', `--comp-secret-1=${SECRET}`, `--external-ports=${port}`];

/** A chat message to the bot: 'echo' when its echo comes back, or the error condition it was answered with. */
async function echoOrError(user: XmppClient, body: string): Promise<string> {
  const answer = nextStanza(user, (s) => s.is('message') && (s.getChildText('body') === `echo: ${body}` || (s.attrs.type === 'error' && s.getChildText('body') === body)), WAIT_MS);
  await user.send(xml('message', { to: 'bot@bridge.localhost', type: 'chat' }, xml('body', {}, body)));
  const got = await answer;
  return got.attrs.type === 'error' ? `error ${got.getChild('error')?.getChildElements()[0]?.name ?? '?'}` : 'echo';
}

/** A chat message to the bot and its echo back. */
async function roundTrip(user: XmppClient, body: string): Promise<string> {
  const echoed = nextStanza(user, (s) => s.is('message') && s.getChildText('body') === `echo: ${body}`, WAIT_MS);
  await user.send(xml('message', { to: 'bot@bridge.localhost', type: 'chat' }, xml('body', {}, body)));
  return (await echoed).attrs.from as string;
}

// XEP-0114: a bridge or a bot written with xmpp.js connects with the shared secret and talks to users.
t.test('an external component (XEP-0114) built with @xmpp/component serves its domain', async (t) => {
  const port = await freePort();
  const server = await startTestServer(t, { args: args(port) });
  await server.addUser('alice');
  const alice = await server.login('alice');

  await t.test('a wrong secret is refused with not-authorized', async (t) => {
    const impostor = component({ service: `xmpp://127.0.0.1:${port}`, domain: 'bridge.localhost', password: 'not-the-secret' });
    (impostor as unknown as { reconnect: { stop(): void } }).reconnect.stop();
    impostor.on('error', () => undefined);
    await t.rejects(impostor.start(), /not-authorized/);
  });

  await t.test('a message before it connects bounces with service-unavailable', async (t) => {
    const error = nextStanza(alice, (s) => s.is('message') && s.attrs.type === 'error', WAIT_MS);
    await alice.send(xml('message', { to: 'bot@bridge.localhost', type: 'chat' }, xml('body', {}, 'anyone?')));
    t.equal((await error).getChild('error')?.getChildElements()[0]?.name, 'service-unavailable');
  });

  await t.test('connected, it gets users\' messages and answers them', async (t) => {
    const bot = await echoComponent(t, port, 'bridge.localhost', SECRET);
    t.equal(await roundTrip(alice, 'hi bot'), 'bot@bridge.localhost', 'the answer comes from the bot\'s JID');
    t.equal(bot.heard[0]?.attrs.from, 'alice@localhost/' + alice.jid!.resource, 'the bot sees the user\'s full JID');
  });
});

// In a cluster: the component connects to any node and gets stanzas from users on every node; when
// its connection goes, a new one on another node takes over.
t.test('an external component in a three-node cluster: reached from every node, reconnects to another', async (t) => {
  const dbUri = await createClusterDatabase(t);
  if (!dbUri) return;
  const ports = [await freePort(), await freePort(), await freePort()];
  const cluster = await startCluster(t, { nodes: 3, dbUri, strategy: 'online-users-caching', args: ['--comp-name-1=bridge', '--comp-class-1=external', `--comp-secret-1=${SECRET}`], nodeArgs: (i) => [`--external-ports=${ports[i]}`] });
  const users: XmppClient[] = [];
  for (const i of [0, 1, 2]) {
    await cluster.addUser(`u${i}`);
    users.push(await cluster.login(i, `u${i}`, { resource: 'r' }));
  }
  // What the nodes said about the component, when something here failed.
  t.teardown(() => {
    if (t.passing()) return;
    for (const node of cluster.nodes) t.comment(`node ${node.index + 1}:\n${node.output.split('\n').filter((l) => /external|bridge|component|cluster message/i.test(l)).slice(-20).join('\n')}`);
  });
  const first = await echoComponent(t, ports[0], 'bridge.localhost', SECRET);
  for (const [i, user] of users.entries()) t.equal(await roundTrip(user, `from node ${i + 1}`), 'bot@bridge.localhost', `a user on node ${i + 1} reaches the bot connected to node 1`);
  await first.stop();
  await eventually('node 1 no longer holds the bot', async () => (await cluster.storage.knex('component_owners').where({ service: 'bridge' }).select('node')).length === 0, WAIT_MS);
  await echoComponent(t, ports[1], 'bridge.localhost', SECRET);
  // Right after a reconnect a node may still answer from what it knew (service-unavailable: the
  // message is answered, not lost); a message that gets neither its echo nor an error fails.
  for (const [i, user] of users.entries()) {
    let answers: string[] = [];
    for (let attempt = 1; attempt <= 5 && answers.at(-1) !== 'echo'; attempt++) answers.push(await echoOrError(user, `again from node ${i + 1} (${attempt})`));
    if (answers.length > 1) t.comment(`user on node ${i + 1}: ${answers.join(', ')}`);
    t.equal(answers.at(-1), 'echo', `after it reconnected to node 2, a user on node ${i + 1} reaches it`);
    answers = [];
  }
});
