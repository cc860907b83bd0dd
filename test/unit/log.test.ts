import t from 'tap';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import net, { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { freePort } from '../helpers/ports';
import { createLogger, ElasticsearchTransport, LoggerConfig, silentLogger } from '../../server/log';

const base: LoggerConfig = { logLevel: 'info', logJson: false, debug: [], clusterHostname: 'node-a' };

/** A logger writing into memory; `lines()` closes it and returns what it wrote. */
function capture(config: Partial<LoggerConfig> = {}) {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (chunk: Buffer) => { text += chunk.toString(); });
  const log = createLogger({ ...base, ...config }, { stream });
  return {
    log,
    async lines(): Promise<string[]> {
      await log.close();
      return text.split('\n').filter((l) => l !== '');
    },
  };
}

const TS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z /;

t.test('a human line carries timestamp, padded level, category, child meta, message and meta', async (t) => {
  const { log, lines } = capture();
  log.category('c2s').child({ conn: 'c2s-17' }).info('stream opened', { from: '1.2.3.4', n: 2, why: 'two words' });
  log.warn('plain');
  const [first, second] = await lines();
  t.match(first, TS);
  t.equal(first.slice(25), 'info  [c2s conn=c2s-17] stream opened from=1.2.3.4 n=2 why="two words"');
  t.equal(second.slice(25), 'warn  plain');
});

t.test('a child meta appears in every line of the child and its children', async (t) => {
  const { log, lines } = capture();
  const conn = log.child({ conn: 'c2s-1' });
  conn.info('one');
  conn.child({ jid: 'a@b/c' }).error('two');
  log.info('three');
  const out = (await lines()).map((l) => l.slice(25));
  t.same(out, ['info  [conn=c2s-1] one', 'error [conn=c2s-1 jid=a@b/c] two', 'info  three']);
});

t.test('debug lines of a category appear only when --debug names it, even at log level info', async (t) => {
  const { log, lines } = capture({ debug: ['cluster'] });
  log.category('cluster').debug('heartbeat sent');
  log.category('db').debug('query');
  log.debug('root debug');
  log.category('cluster').child({ peer: 'node-b' }).debug('link up');
  const out = (await lines()).map((l) => l.slice(25));
  t.same(out, ['debug [cluster] heartbeat sent', 'debug [cluster peer=node-b] link up']);
});

t.test('a disabled debug() is a shared no-op that never looks at its arguments', async (t) => {
  const { log } = capture();
  const db = log.category('db');
  t.equal(db.debugEnabled, false);
  t.equal(db.debug, log.category('xmpp').debug, 'the same no-op function');
  let touched = false;
  const meta = new Proxy({}, { ownKeys: () => { touched = true; return []; }, get: () => { touched = true; return undefined; } });
  db.debug('x', meta);
  t.equal(touched, false);
  t.equal(log.category('db').child({ a: 1 }).debugEnabled, false);
  await log.close();
});

t.test('--log-level debug turns on debug everywhere; error hides info and warn', async (t) => {
  const verbose = capture({ logLevel: 'debug' });
  verbose.log.debug('root');
  verbose.log.category('router').debug('routed');
  t.same((await verbose.lines()).map((l) => l.slice(25)), ['debug root', 'debug [router] routed']);

  const quiet = capture({ logLevel: 'error', debug: ['c2s'] });
  quiet.log.info('hidden');
  quiet.log.warn('hidden');
  quiet.log.error('shown');
  quiet.log.category('c2s').debug('category debug still shown');
  t.same((await quiet.lines()).map((l) => l.slice(25)), ['error shown', 'debug [c2s] category debug still shown']);
});

t.test('--debug all enables every category', async (t) => {
  const { log, lines } = capture({ debug: ['all'] });
  log.category('anything').debug('yes');
  t.equal((await lines()).length, 1);
});

t.test('--log-json writes one JSON object per line with node, category and flattened meta', async (t) => {
  const { log, lines } = capture({ logJson: true, debug: ['db'] });
  log.category('db').child({ conn: 'c2s-3' }).debug('query', { ms: 12, message: 'clash' });
  log.error('failed', { err: Object.assign(new Error('boom'), { code: 'E_BOOM' }) });
  log.info('link up', { node: 'node-b' });
  const [a, b, c] = (await lines()).map((l) => JSON.parse(l) as Record<string, unknown>);
  t.match(c, { node: 'node-a', peer: 'node-b' }, 'another node named in meta is the peer; node stays the one that logs');
  t.match(a, { level: 'debug', message: 'query', node: 'node-a', category: 'db', conn: 'c2s-3', ms: 12, message_: 'clash' });
  t.match(a.timestamp, /^\d{4}-\d\d-\d\dT/);
  t.match(b, { level: 'error', message: 'failed', node: 'node-a', err: { name: 'Error', message: 'boom', code: 'E_BOOM' } });
  t.match((b.err as { stack: string }).stack, /boom/);
  t.notOk('category' in b);
});

t.test('an error in meta prints its stack below a human line', async (t) => {
  const { log, lines } = capture();
  log.error('failed', { err: new Error('boom') });
  const out = await lines();
  t.equal(out[0].slice(25), 'error failed err="boom"');
  t.match(out[1], /^\s+at /);
});

t.test('--log-file writes the same lines to the file as well as the console', async (t) => {
  const dir = t.testdir({});
  const file = path.join(dir, 'logs', 'xmpp.log');
  const { log, lines } = capture({ logFile: file });
  log.info('to both');
  const consoleLines = await lines();
  t.equal(consoleLines.length, 1);
  t.equal(fs.readFileSync(file, 'utf8').trim(), consoleLines[0]);
});

t.test('reconfigure (SIGHUP) changes the level and debug categories of loggers made before it', async (t) => {
  const { log, lines } = capture();
  const c2s = log.category('c2s').child({ conn: 'c2s-1' });
  c2s.debug('hidden');
  t.equal(c2s.debugEnabled, false);
  log.reconfigure({ logLevel: 'info', debug: ['c2s'] });
  t.equal(c2s.debugEnabled, true);
  c2s.debug('shown');
  log.category('db').debug('other category, hidden');
  log.reconfigure({ logLevel: 'warn', debug: [] });
  c2s.debug('hidden again');
  c2s.info('info hidden at warn');
  c2s.warn('warn shown');
  const out = (await lines()).map((l) => l.slice(25));
  t.same(out, ['debug [c2s conn=c2s-1] shown', 'warn  [c2s conn=c2s-1] warn shown']);
});

t.test('reopen (SIGHUP after rotation) writes to a new file at the configured path', async (t) => {
  const dir = t.testdir({});
  const file = path.join(dir, 'xmpp.log');
  const { log, lines } = capture({ logFile: file });
  log.info('before rotation');
  await waitFor(() => fs.existsSync(file) && fs.readFileSync(file, 'utf8').includes('before rotation'));
  fs.renameSync(file, `${file}.1`);
  log.reopen();
  log.info('after rotation');
  await lines();
  t.match(fs.readFileSync(file, 'utf8'), /after rotation/);
  t.notMatch(fs.readFileSync(file, 'utf8'), /before rotation/);
  t.notMatch(fs.readFileSync(`${file}.1`, 'utf8'), /after rotation/, 'the rotated file gets nothing more');
});

async function waitFor(check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

t.test('lines logged after close are dropped quietly', async (t) => {
  const { log, lines } = capture();
  await lines();
  t.doesNotThrow(() => log.info('late'));
});

t.test('silentLogger writes nothing and supports child, category and close', async (t) => {
  const log = silentLogger();
  log.child({ a: 1 }).category('x').debug('nothing');
  log.error('nothing');
  t.equal(log.debugEnabled, false);
  t.equal(log.droppedRecords(), 0);
  await log.close();
});

type BulkAnswer = (body: string, n: number) => { status: number; json: unknown };

/** What Elasticsearch says when it takes every record of a bulk body. */
const acceptAll: BulkAnswer = (body) => ({ status: 200, json: { errors: false, items: docs(body).map(() => ({ create: { status: 201 } })) } });

/**
 * A tiny Elasticsearch stand-in recording each request; `answer` gets the bulk body and the request's
 * number (from 1). It sends the product header the official client checks on every 2xx answer.
 */
async function fakeElasticsearch(t: tap.Test, answer: BulkAnswer = acceptAll, port = 0) {
  const bodies: { method?: string; url: string; contentType?: string; authorization?: string; body: string }[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c.toString(); });
    req.on('end', () => {
      const headers = { 'content-type': 'application/json', 'x-elastic-product': 'Elasticsearch' };
      if (req.method === 'GET' && req.url === '/') {
        res.writeHead(200, headers).end(JSON.stringify({ name: 'fake', cluster_name: 'fake', version: { number: '8.19.0' }, tagline: 'You Know, for Search' }));
        return;
      }
      bodies.push({ method: req.method, url: req.url ?? '', contentType: req.headers['content-type'], authorization: req.headers.authorization, body });
      const { status, json } = answer(body, bodies.length);
      res.writeHead(status, headers).end(JSON.stringify(json));
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  }));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, bodies };
}

function docs(body: string): { action: Record<string, unknown>; doc: Record<string, unknown> }[] {
  const lines = body.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  const out = [];
  for (let i = 0; i < lines.length; i += 2) out.push({ action: lines[i], doc: lines[i + 1] });
  return out;
}

const messages = (bodies: { body: string }[]) => bodies.flatMap((b) => docs(b.body).map((d) => d.doc.message));
const rec = (message = 'x') => ({ record: { timestamp: new Date().toISOString(), level: 'info', message, context: {} } });

t.test('--log-elasticsearch POSTs JSON records to /_bulk into the configured index', async (t) => {
  const es = await fakeElasticsearch(t);
  const stream = new PassThrough().resume();
  const log = createLogger({ ...base, logElasticsearch: es.url, logElasticsearchIndex: 'xmpp-test' }, { stream });
  log.category('cluster').child({ peer: 'node-b' }).info('link up', { rtt: 3 });
  log.warn('second');
  await log.close();
  t.equal(es.bodies.length, 1, 'one batch');
  t.equal(es.bodies[0].method, 'POST');
  t.equal(es.bodies[0].url, '/_bulk');
  t.match(es.bodies[0].contentType, /x-ndjson/);
  t.ok(es.bodies[0].body.endsWith('\n'), 'bulk bodies end with a newline');
  const sent = docs(es.bodies[0].body);
  t.same(sent.map((d) => d.action), [{ create: { _index: 'xmpp-test' } }, { create: { _index: 'xmpp-test' } }]);
  t.match(sent[0].doc, { level: 'info', message: 'link up', node: 'node-a', category: 'cluster', peer: 'node-b', rtt: 3 });
  t.equal(sent[0].doc['@timestamp'], sent[0].doc.timestamp);
  t.equal(log.droppedRecords(), 0);
});

t.test('the index defaults to xmpp-server', async (t) => {
  const es = await fakeElasticsearch(t);
  const log = createLogger({ ...base, logElasticsearch: es.url }, { stream: new PassThrough().resume() });
  log.info('x');
  await log.close();
  t.same(docs(es.bodies[0].body)[0].action, { create: { _index: 'xmpp-server' } });
});

t.test('the transport flushes on its timer without being closed', async (t) => {
  const es = await fakeElasticsearch(t);
  const transport = new ElasticsearchTransport({ url: es.url, node: 'n', flushInterval: 50 });
  t.teardown(() => transport.flushAll());
  transport.log(rec('tick'), () => {});
  await waitFor(() => es.bodies.length > 0);
  t.equal(es.bodies.length, 1);
  await transport.flush(); // waits for the timer's request to finish
  t.equal(transport.sent, 1);
});

t.test('a full batch of 500 records is sent at once, in batches of at most 500', async (t) => {
  const es = await fakeElasticsearch(t);
  const transport = new ElasticsearchTransport({ url: es.url, node: 'n', flushInterval: 60_000 });
  for (let i = 0; i < 500; i++) transport.log(rec(`m${i}`), () => {});
  await waitFor(() => es.bodies.length > 0);
  t.equal(es.bodies.length, 1, 'sent before the (one minute) timer');
  t.equal(docs(es.bodies[0].body).length, 500);
  for (let i = 500; i < 1200; i++) transport.log(rec(`m${i}`), () => {});
  await transport.flushAll();
  t.same(es.bodies.map((b) => docs(b.body).length), [500, 500, 200]);
  t.equal(transport.sent, 1200);
  t.equal(transport.dropped, 0);
});

t.test('records logged before Elasticsearch listens arrive once it does', async (t) => {
  const port = await freePort();
  const warnings: string[] = [];
  const log = createLogger({ ...base, logElasticsearch: `http://127.0.0.1:${port}` }, { stream: new PassThrough().resume(), warn: (m) => warnings.push(m) });
  log.info('starting');
  log.info('listening');
  await waitFor(() => warnings.length > 0, 20_000); // the first try (on the one-second timer) failed
  t.match(warnings[0], /^log: Elasticsearch at http:\/\/127\.0\.0\.1:\d+ did not take log records \(.*\); they stay queued/);
  const es = await fakeElasticsearch(t, acceptAll, port);
  await waitFor(() => messages(es.bodies).length === 2, 20_000);
  t.same(messages(es.bodies), ['starting', 'listening']);
  t.equal(log.droppedRecords(), 0);
  // Elasticsearch has the body before the logger has read its answer; the second warning follows that answer
  await waitFor(() => warnings.length >= 2, 20_000);
  t.match(warnings, [/did not take/, /takes log records again; 0 dropped so far/], 'one warning when it fails, one when it is back');
  await log.close();
});

t.test('a 503 keeps the batch queued and it is retried with back-off until Elasticsearch takes it', async (t) => {
  const es = await fakeElasticsearch(t, (body, n) => (n <= 2 ? { status: 503, json: { error: { type: 'unavailable_shards_exception' } } } : acceptAll(body, n)));
  const warnings: string[] = [];
  const transport = new ElasticsearchTransport({ url: es.url, node: 'n', flushInterval: 60_000, retryDelay: 20, warn: (m) => warnings.push(m) });
  t.teardown(() => transport.flushAll());
  transport.log(rec('a'), () => {});
  transport.log(rec('b'), () => {});
  await transport.flush();
  t.equal(transport.sent, 0);
  t.equal(transport.dropped, 0, 'nothing dropped on a 503');
  await waitFor(() => transport.sent === 2);
  t.equal(es.bodies.length, 3, 'two refusals, then taken');
  t.same(messages(es.bodies.slice(2)), ['a', 'b']);
  t.equal(transport.dropped, 0);
  t.match(warnings, [/did not take log records \(HTTP 503 unavailable_shards_exception\)/, /takes log records again/]);
});

t.test('credentials in the URL go as basic auth and never into a warning', async (t) => {
  const user = 'logger';
  const password = 'p@ss:w0rd';
  const encoded = encodeURIComponent(password);
  const basic = Buffer.from(`${user}:${password}`).toString('base64');
  const es = await fakeElasticsearch(t, (body, n) => (n === 1 ? { status: 503, json: { error: { type: 'oops', reason: `at ${user}:${password}` } } } : acceptAll(body, n)));
  const warnings: string[] = [];
  const withCredentials = (url: string) => url.replace('http://', `http://${user}:${encoded}@`);
  const transport = new ElasticsearchTransport({ url: withCredentials(es.url), node: 'n', flushInterval: 60_000, retryDelay: 20, warn: (m) => warnings.push(m) });
  transport.log(rec('secret-free'), () => {});
  await transport.flushAll();
  t.equal(transport.sent, 1);
  t.equal(es.bodies.length, 2);
  for (const request of es.bodies) {
    t.equal(request.authorization, `Basic ${basic}`);
    t.notMatch(request.url, /logger|w0rd/);
  }

  // An unreachable one too: the library's connection error goes into the warning.
  const dead = new ElasticsearchTransport({ url: withCredentials(`http://127.0.0.1:${await freePort()}`), node: 'n', flushInterval: 60_000, flushTimeout: 200, warn: (m) => warnings.push(m) });
  dead.log(rec(), () => {});
  await dead.flushAll();
  t.equal(dead.dropped, 1);

  t.ok(warnings.length >= 3, 'warned');
  t.ok(warnings.every((w) => w.includes(`${user}:***@127.0.0.1`)), 'the URL is printed with its password masked');
  for (const secret of [password, encoded, 'w0rd', basic]) {
    t.notOk(warnings.some((w) => w.includes(secret)), `no warning holds ${secret}`);
  }
});

t.test('close delivers the last lines even when Elasticsearch fails its first try', async (t) => {
  const es = await fakeElasticsearch(t, (body, n) => (n === 1 ? { status: 503, json: {} } : acceptAll(body, n)));
  const log = createLogger({ ...base, logElasticsearch: es.url }, { stream: new PassThrough().resume(), warn: () => {} });
  log.info('node stopped');
  log.info('shutting down');
  await log.close();
  t.same(messages(es.bodies.slice(1)), ['node stopped', 'shutting down']);
  t.equal(log.droppedRecords(), 0);
});

t.test('when Elasticsearch never answers, close gives up after its timeout and counts the records dropped, with one warning', async (t) => {
  // A server that hangs up on every connection: Elasticsearch is "there" but never answers.
  const rude = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => rude.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => rude.close(() => resolve())));
  const url = `http://127.0.0.1:${(rude.address() as AddressInfo).port}`;
  const warnings: string[] = [];
  const log = createLogger({ ...base, logElasticsearch: url }, { stream: new PassThrough().resume(), warn: (m) => warnings.push(m) });
  for (let i = 0; i < 3; i++) log.info(`lost ${i}`);
  const started = Date.now();
  await log.close();
  t.ok(Date.now() - started < 15_000, 'shutdown is not held (flushAll gives up after 5 s)');
  t.equal(log.droppedRecords(), 3);
  t.equal(warnings.length, 1, 'a single warning');
  t.match(warnings[0], /^log: Elasticsearch at http:\/\/127\.0\.0\.1:\d+ did not take log records/);

  const transport = new ElasticsearchTransport({ url, node: 'n', flushInterval: 60_000, flushTimeout: 300, warn: (m) => warnings.push(m) });
  transport.log(rec(), () => {});
  await transport.flush();
  t.equal(transport.dropped, 0, 'a failed try keeps the record queued');
  transport.log(rec(), () => {});
  await transport.flushAll();
  t.equal(transport.dropped, 2, 'what flushAll could not send is counted');
  t.equal(warnings.length, 2, 'each transport warns once');
  transport.log(rec(), () => {});
  t.equal(transport.dropped, 3, 'a record after flushAll is counted, not thrown');
});

t.test('refused items and a refused batch are dropped and counted, and not sent again', async (t) => {
  let mode: 'items' | 'status' = 'items';
  const es = await fakeElasticsearch(t, () => mode === 'items'
    ? { status: 200, json: { errors: true, items: [{ create: { status: 201 } }, { create: { status: 400, error: { type: 'mapper_parsing_exception' } } }] } }
    : { status: 400, json: { error: { type: 'illegal_argument_exception' } } });
  const warnings: string[] = [];
  const transport = new ElasticsearchTransport({ url: es.url, node: 'n', flushInterval: 60_000, retryDelay: 20, warn: (m) => warnings.push(m) });
  transport.log(rec(), () => {});
  transport.log(rec(), () => {});
  await transport.flush();
  t.equal(transport.sent, 1);
  t.equal(transport.dropped, 1);
  mode = 'status';
  transport.log(rec(), () => {});
  await transport.flush();
  t.equal(transport.dropped, 2);
  await transport.flushAll();
  t.equal(es.bodies.length, 2, 'each batch went once');
  t.equal(transport.sent, 1);
  t.equal(transport.dropped, 2);
  t.equal(warnings.length, 1, 'one warning');
  t.match(warnings[0], /^log: dropping log records for Elasticsearch at http:\/\/127\.0\.0\.1:\d+: it refused 1 records \(mapper_parsing_exception\)/);
});

t.test('items answered 429 are sent again, alone, after a back-off', async (t) => {
  const es = await fakeElasticsearch(t, (body, n) => n === 1
    ? { status: 200, json: { errors: true, items: [{ create: { status: 201 } }, { create: { status: 429, error: { type: 'es_rejected_execution_exception' } } }] } }
    : acceptAll(body, n));
  const transport = new ElasticsearchTransport({ url: es.url, node: 'n', flushInterval: 60_000, retryDelay: 20, warn: () => {} });
  t.teardown(() => transport.flushAll());
  transport.log(rec('first'), () => {});
  transport.log(rec('pushed back'), () => {});
  await transport.flush();
  await waitFor(() => transport.sent === 2);
  t.same(messages(es.bodies), ['first', 'pushed back', 'pushed back']);
  t.equal(transport.dropped, 0);
});

t.test('records beyond the queue bound are dropped and counted; the queued ones arrive once Elasticsearch is up', async (t) => {
  const port = await freePort();
  const warnings: string[] = [];
  const transport = new ElasticsearchTransport({ url: `http://127.0.0.1:${port}`, node: 'n', flushInterval: 60_000, batchSize: 1000, maxQueue: 5, warn: (m) => warnings.push(m) });
  t.teardown(() => transport.flushAll());
  for (let i = 0; i < 8; i++) transport.log(rec(`m${i}`), () => {});
  t.equal(transport.dropped, 3);
  t.match(warnings, [/it is not keeping up \(5 records queued\)/]);
  t.equal(warnings.length, 1, 'one warning, not one per record');
  const es = await fakeElasticsearch(t, acceptAll, port);
  await transport.flush();
  t.same(messages(es.bodies), ['m0', 'm1', 'm2', 'm3', 'm4']);
  t.equal(transport.sent, 5);
  t.equal(transport.dropped, 3);
});
