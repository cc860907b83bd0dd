import os from 'node:os';
import t from 'tap';
import { getJson, httpRequest } from '../helpers/http';
import { waitUntil } from '../helpers/im';
import { nextStanza, RawConnection, startTestServer, STREAM_OPEN, xml, type TestServer } from '../helpers/server';
import { stanzaLogin, stanzaStop } from '../helpers/stanza';
import { SERVER_VERSION } from '../../server/version';

/** The value of one Prometheus sample (`name{labels}`), labels given in any order; undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const found = Object.fromEntries([...(m[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(m[4]);
  }
  return undefined;
}

const metricsOf = async (server: TestServer) => (await httpRequest(`http://127.0.0.1:${server.httpPort}/metrics`)).text;

t.test('GET /health', async (t) => {
  await t.test('is 200 with a small JSON body when the node serves and the cluster is big enough', async (t) => {
    const server = await startTestServer(t);
    const health = await getJson(`http://127.0.0.1:${server.httpPort}/health`);
    t.equal(health.status, 200);
    t.match(health.headers['content-type'], /^application\/json/);
    t.same(health.json, { status: 'ok', node: os.hostname().toLowerCase(), clusterNodes: 1 });
  });

  await t.test('is 503 while the cluster forms (fewer than --min-cluster-nodes connected so far), saying why', async (t) => {
    const server = await startTestServer(t, { args: ['--min-cluster-nodes=2'] });
    const health = await getJson(`http://127.0.0.1:${server.httpPort}/health`);
    t.equal(health.status, 503);
    t.equal(health.json.status, 'unavailable');
    t.equal(health.json.clusterNodes, 1);
    t.equal(health.json.minClusterNodes, 2);
    t.match(health.json.problems, ['the cluster is forming: 1 of 2 nodes connected']);
    t.equal((await getJson(`http://127.0.0.1:${server.httpPort}/health/ready`)).status, 503, '/health/ready is the same check');
    const live = await getJson(`http://127.0.0.1:${server.httpPort}/health/live`);
    t.equal(live.status, 200, 'but the process is alive');
  });
});

t.test('GET /status and GET /metrics describe the node', async (t) => {
  const server = await startTestServer(t);
  await server.addUser('alice');
  await server.addUser('bob');
  const base = `http://127.0.0.1:${server.httpPort}`;

  const tcp = await server.login('alice', { resource: 'tcp' });
  const ws = await server.login('bob', { tls: 'ws', resource: 'ws' });
  const bosh = await stanzaLogin(t, server, 'bob', 'bosh', { resource: 'bosh' });
  // A refused login, over a raw direct-TLS connection that is gone again before the figures are read.
  const refused = await RawConnection.connect(server.tlsPort, true);
  refused.write(STREAM_OPEN);
  await refused.waitFor(/<mechanism>PLAIN/);
  refused.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from('\0alice\0wrong-password').toString('base64')}</auth>`);
  await refused.waitFor(/<failure/);
  refused.destroy();
  await waitUntil(async () => (await getJson(`${base}/status`)).json.connections.tcp === 1, 5000, 'the refused connection to be gone');

  await t.test('/status: node, version, uptime, sessions and connections per transport, memory, database', async (t) => {
    const status = await getJson(`${base}/status`);
    t.equal(status.status, 200);
    const s = status.json;
    t.equal(s.node, os.hostname().toLowerCase());
    t.equal(s.version, SERVER_VERSION);
    t.ok(s.uptimeSeconds >= 0);
    t.ok(Date.parse(s.startedAt) <= Date.now());
    t.equal(s.sessions, 3);
    t.same(s.connections, { tcp: 1, websocket: 1, bosh: 1 });
    t.ok(s.memory.rss > 0 && s.memory.heapUsed > 0);
    t.same(s.database, { kind: 'sqlite', reachable: true });
    t.same(s.cluster, { nodes: 1, minNodes: 1 });
  });

  await t.test('/status for people: HTML when a browser asks (Accept: text/html) or with ?format=html', async (t) => {
    for (const [how, url, headers] of [
      ['Accept', `${base}/status`, { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' }],
      ['format=html', `${base}/status?format=html`, {}],
    ] as const) {
      const page = await httpRequest(url, { headers });
      t.match(page.headers['content-type'], /^text\/html; charset=utf-8/, how);
      t.match(page.text, /<p class="state ok" id="state">Ready: serving clients<\/p>/);
      t.match(page.text, /<th scope="row">Sessions<\/th><td>3<\/td>/);
      t.match(page.text, /<p id="cluster">Not clustered\.<\/p>/);
    }
    const asJson = await httpRequest(`${base}/status?format=json`, { headers: { accept: 'text/html' } });
    t.match(asJson.headers['content-type'], /^application\/json/, '?format=json wins over Accept');
  });

  await t.test('/metrics: Prometheus text with connections, stanzas, auth, routing latency, offline queue, event loop', async (t) => {
    const before = await metricsOf(server);
    const reply = await httpRequest(`${base}/metrics`);
    t.match(reply.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    const node = os.hostname().toLowerCase();
    t.equal(sample(before, 'xmpp_connections', { transport: 'tcp', node }), 1);
    t.equal(sample(before, 'xmpp_connections', { transport: 'websocket' }), 1);
    t.equal(sample(before, 'xmpp_connections', { transport: 'bosh' }), 1);
    t.equal(sample(before, 'xmpp_sessions'), 3);
    t.ok(sample(before, 'xmpp_auth_total', { result: 'success' })! >= 3, 'three logins succeeded');
    t.equal(sample(before, 'xmpp_auth_total', { result: 'failure' }), 1, 'one wrong password');
    t.ok(sample(before, 'xmpp_event_loop_lag_seconds', { stat: 'max' })! >= 0);
    t.ok(sample(before, 'xmpp_process_memory_bytes', { type: 'rss' })! > 0);
    t.equal(sample(before, 'xmpp_info', { version: SERVER_VERSION }), 1);
    t.ok(sample(before, 'process_cpu_user_seconds_total', { node })! > 0, 'prom-client process metrics');
    t.ok(sample(before, 'nodejs_heap_size_used_bytes', { node })! > 0, 'and Node.js metrics');
    t.equal(sample(before, 'xmpp_log_dropped_records_total'), 0, 'log records the shipper dropped');

    const messagesIn = sample(before, 'xmpp_stanzas_in_total', { kind: 'message' }) ?? 0;
    const messagesOut = sample(before, 'xmpp_stanzas_out_total', { kind: 'message' }) ?? 0;
    const routed = sample(before, 'xmpp_routing_latency_seconds_count') ?? 0;
    const got = nextStanza(ws, (s) => s.is('message'));
    await tcp.send(xml('message', { to: 'bob@localhost/ws', type: 'chat' }, xml('body', {}, 'counted')));
    await got;
    await server.addUser('carol');
    await tcp.send(xml('message', { to: 'carol@localhost', type: 'chat' }, xml('body', {}, 'for later')));
    await waitUntil(async () => (await server.node.storage.offline.count('carol@localhost')) === 1, 5000, 'the offline message');

    const after = await metricsOf(server);
    t.equal(sample(after, 'xmpp_stanzas_in_total', { kind: 'message' }), messagesIn + 2, 'messages from clients are counted');
    t.ok(sample(after, 'xmpp_stanzas_out_total', { kind: 'message' })! >= messagesOut + 1, 'messages to clients are counted');
    t.ok(sample(after, 'xmpp_routing_latency_seconds_count')! >= routed + 2, 'every routed stanza is in the latency histogram');
    t.ok(sample(after, 'xmpp_routing_latency_seconds_bucket', { le: '+Inf' })! >= routed + 2);
    t.equal(sample(after, 'xmpp_offline_messages'), 1, 'the offline queue size is read from the database');
  });

  await t.test('connections leave the gauges when they close', async (t) => {
    await Promise.all([tcp.stop(), ws.stop(), stanzaStop(bosh)]);
    await waitUntil(async () => sample(await metricsOf(server), 'xmpp_sessions') === 0, 5000, 'no sessions');
    const text = await metricsOf(server);
    for (const transport of ['tcp', 'websocket', 'bosh']) t.equal(sample(text, 'xmpp_connections', { transport }), 0, transport);
  });

  await t.test('only GET and HEAD, and unknown paths are 404', async (t) => {
    t.equal((await httpRequest(`${base}/health`, { method: 'POST' })).status, 405);
    t.equal((await httpRequest(`${base}/status`, { method: 'HEAD' })).status, 200);
    t.equal((await httpRequest(`${base}/nothing-here`)).status, 404);
  });
});

t.test('two nodes in one process keep separate metrics', async (t) => {
  const a = await startTestServer(t);
  const b = await startTestServer(t);
  await a.addUser('alice');
  const alice = await a.login('alice');
  t.equal(sample(await metricsOf(a), 'xmpp_connections', { transport: 'tcp' }), 1);
  t.equal(sample(await metricsOf(b), 'xmpp_connections', { transport: 'tcp' }), 0, 'the other node has its own registry');
  await alice.stop();
});

t.test('XEP-0156 host-meta names the WebSocket and BOSH endpoints', async (t) => {
  const server = await startTestServer(t, { args: ['--trusted-proxies=127.0.0.1'] });
  const ws = `ws://127.0.0.1:${server.wsPort}/xmpp-websocket`;
  const httpBind = `http://127.0.0.1:${server.boshPort}/http-bind`;

  await t.test('host-meta (XRD) on the BOSH port', async (t) => {
    const reply = await httpRequest(`http://127.0.0.1:${server.boshPort}/.well-known/host-meta`);
    t.equal(reply.status, 200);
    t.match(reply.headers['content-type'], /^application\/xrd\+xml/);
    t.equal(reply.headers['access-control-allow-origin'], '*');
    t.match(reply.text, /<XRD xmlns='http:\/\/docs\.oasis-open\.org\/ns\/xri\/xrd-1\.0'>/);
    t.match(reply.text, `<Link rel='urn:xmpp:alt-connections:websocket' href='${ws}'/>`);
    t.match(reply.text, `<Link rel='urn:xmpp:alt-connections:xbosh' href='${httpBind}'/>`);
  });

  await t.test('host-meta.json on the HTTP port', async (t) => {
    const reply = await getJson(`http://127.0.0.1:${server.httpPort}/.well-known/host-meta.json`);
    t.equal(reply.status, 200);
    t.same(reply.json, { links: [{ rel: 'urn:xmpp:alt-connections:websocket', href: ws }, { rel: 'urn:xmpp:alt-connections:xbosh', href: httpBind }] });
  });

  await t.test('asked over https, it names wss:// and https:// URLs', async (t) => {
    const reply = await getJson(`https://127.0.0.1:${server.boshPort}/.well-known/host-meta.json`);
    t.same(reply.json.links.map((l: { href: string }) => l.href), [
      `wss://127.0.0.1:${server.wsPort}/xmpp-websocket`,
      `https://127.0.0.1:${server.boshPort}/http-bind`,
    ]);
  });

  await t.test('asked through a trusted proxy, it names the public host the proxy serves', async (t) => {
    const reply = await getJson(`http://127.0.0.1:${server.boshPort}/.well-known/host-meta.json`, { 'X-Forwarded-Proto': 'https', 'X-Forwarded-Host': 'chat.example.com' });
    t.same(reply.json.links.map((l: { href: string }) => l.href), ['wss://chat.example.com/xmpp-websocket', 'https://chat.example.com/http-bind']);
  });

});
