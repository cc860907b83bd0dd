import t from 'tap';
import { BoshRaw } from '../helpers/bosh';
import { startCluster } from '../helpers/cluster';
import { createClusterDatabase } from '../helpers/databases';
import { freePort, nextStanza, xml } from '../helpers/server';

t.test('a BOSH request that lands on a node that does not own the session is served by the owner', async (t) => {
  const dbUri = await createClusterDatabase(t);
  if (!dbUri) return;
  const boshPorts = [await freePort(), await freePort()];
  const cluster = await startCluster(t, { nodes: 2, dbUri, strategy: 'broadcast', nodeArgs: (i) => [`--bosh-ports=${boshPorts[i]}`] });
  await cluster.addUser('web');
  await cluster.addUser('tcp');
  const tcp = await cluster.login(1, 'tcp', { resource: 'desk' });

  // The session lives on node 1; a load balancer without stickiness sends later requests to node 2.
  const onFirst = new BoshRaw(`https://127.0.0.1:${boshPorts[0]}/http-bind`);
  await onFirst.login('web', 'browser');
  t.match(onFirst.sid, /\./, 'the sid names its owner');
  const onSecond = new BoshRaw(`https://127.0.0.1:${boshPorts[1]}/http-bind`);
  onSecond.sid = onFirst.sid;
  onSecond.rid = onFirst.rid;

  const got = nextStanza(tcp, (s) => s.is('message'));
  // The owner holds this request (up to `wait`) until it has something for the browser: the answer below.
  const held = onSecond.request({}, `<message xmlns='jabber:client' to='tcp@localhost/desk' type='chat'><body>via node 2</body></message>`);
  t.equal((await got).getChildText('body'), 'via node 2', 'a stanza sent through the other node arrives');
  t.equal((await got).attrs.from, 'web@localhost/browser');

  await tcp.send(xml('message', { to: 'web@localhost/browser', type: 'chat' }, xml('body', {}, 'long-polled across nodes')));
  const reply = (await held).text;
  t.match(reply, /long-polled across nodes/, 'a long-poll held through the other node gets the answer');
  t.match(reply, /from=.tcp@localhost\/desk/);

  const unknown = await BoshRaw.post(`http://127.0.0.1:${boshPorts[1]}/http-bind`, `<body xmlns='http://jabber.org/protocol/httpbind' rid='5' sid='${'A'.repeat(22)}.${Buffer.from('nowhere.example').toString('base64url')}'/>`);
  t.match(unknown.text, /item-not-found/, 'a sid whose owner is not in the cluster is item-not-found');
});
