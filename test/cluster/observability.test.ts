import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import t from 'tap';
import { eventually, httpGet, startCluster } from '../helpers/cluster';
import { createClusterDatabase } from '../helpers/databases';
import { nextStanza, xml } from '../helpers/server';

const CHROMIUM = '/usr/bin/chromium';

t.test('/status and /metrics show the cluster: nodes, links, queues, strategy cache and forwarding', async (t) => {
  const dbUri = await createClusterDatabase(t);
  if (!dbUri) return;
  const cluster = await startCluster(t, { nodes: 2, dbUri, strategy: 'online-users-caching' });
  await cluster.addUser('ann');
  await cluster.addUser('ben');
  const ann = await cluster.login(0, 'ann');
  const ben = await cluster.login(1, 'ben', { resource: 'b' });
  const got = nextStanza(ben, (s) => s.is('message'));
  await ann.send(xml('message', { to: 'ben@localhost/b', type: 'chat' }, xml('body', {}, 'counted')));
  await got;

  const [first, second] = cluster.nodes;
  const status = await cluster.status(0);
  t.equal(status.cluster.node, first.name);
  t.equal(status.cluster.strategy, 'online-users-caching');
  t.same(status.cluster.nodesKnown, [first.name, second.name].sort());
  t.same(status.cluster.nodesConnected, [second.name]);
  t.match(status.cluster.links, [{ node: second.name, up: true, queuedBytes: Number }]);
  t.ok(status.cluster.links[0].stanzasOut > 0 && status.cluster.links[0].bytesOut > 0, 'per-link counters move');
  t.ok(status.cluster.strategyStats.cachedUsers >= 2, 'the strategy cache knows both users');
  t.ok(status.cluster.forwarded['full-jid'] >= 1, 'the message was forwarded for a full JID');

  const metrics = (await httpGet(first.httpPort, '/metrics')).body;
  t.match(metrics, /xmpp_cluster_nodes\{state="connected",node="[^"]+"\} 1/);
  t.match(metrics, /xmpp_cluster_nodes\{state="known",node="[^"]+"\} 2/);
  t.match(metrics, new RegExp(`xmpp_cluster_link_up\\{peer="${second.name.replace(/\./g, '\\.')}",node="[^"]+"\\} 1`));
  t.match(metrics, /xmpp_cluster_link_queue_bytes\{peer=/);
  t.match(metrics, /xmpp_cluster_link_stanzas_total\{peer="[^"]+",direction="out",node="[^"]+"\} [1-9]/);
  t.match(metrics, /xmpp_cluster_strategy\{strategy="online-users-caching",figure="cachedUsers",node="[^"]+"\} [2-9]/);
  t.match(metrics, /xmpp_cluster_forwarded_total\{reason="full-jid",node="[^"]+"\} [1-9]/);

  // The same figures as a page for people, in a real browser (Debian's Chromium).
  if (!existsSync(CHROMIUM)) {
    t.comment('skipped the status page in Chromium: Debian chromium is not installed (apt-get install chromium)');
    return;
  }
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  const response = await page.goto(`http://127.0.0.1:${first.httpPort}/status`);
  t.match(response?.headers()['content-type'], /^text\/html/, 'a browser gets HTML');
  t.equal(await page.title(), `${first.name}: XMPP node status`);
  t.equal(await page.textContent('#state'), 'Ready: serving clients');
  t.match(await page.textContent('body'), /Sessions\s*1/);
  const links = () => page.$$eval('#links tr', (rows) => rows.slice(1).map((row) => [...row.querySelectorAll('td')].slice(0, 2).map((td) => td.textContent)));
  t.same(await links(), [[second.name, 'up']], 'the link to the other node, up');
  t.equal(await page.getAttribute('meta[http-equiv=refresh]', 'content'), '10', 'it refreshes itself');

  // A node stopping: the page says it is not ready, and why.
  await second.stop();
  await page.reload();
  t.equal(await page.textContent('#state'), 'Ready: serving clients', 'losing a peer never makes the survivor unready');
  await eventually('the link shows down or gone', async () => {
    await page.reload();
    return !(await links()).some(([, state]) => state === 'up');
  }, 20_000);
  const json = await httpGet(first.httpPort, '/status');
  t.doesNotThrow(() => JSON.parse(json.body), 'scripts still get JSON');
});
