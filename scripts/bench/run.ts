import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { deriveScramCredentials } from '../../server/c2s/sasl/scram';
import { openStorage } from '../../server/storage/open-storage';
import { LoadClient } from './xmpp-load';

/**
 * Benchmarks of this server, run as separate node processes on loopback, with the load generator
 * in this process (DESIGN "Performance targets"): closed-loop throughput with 100 sender/receiver
 * pairs and 10 messages in flight each, latency at a steady 2,000 msgs/s, the same across two
 * cluster nodes, and memory per idle TLS connection. Writes BENCHMARKS.md.
 *
 *   npm run bench [-- --seconds=20 --pairs=100 --inflight=10 --idle=1000 --rounds=3]
 *
 * The closed-loop runs (one node, and two nodes for each strategy) take turns, `rounds` times, and
 * the medians are reported: on a shared 2-core host one run can be off by a third.
 *
 * BENCH_NODE_ARGS passes Node options to the server processes, e.g. to profile them:
 *   BENCH_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' npm run bench
 */

const ROOT = path.resolve(__dirname, '..', '..', '..');
const PASSWORD = 'bench-password';

interface Options { seconds: number; pairs: number; inflight: number; rate: number; idle: number; rounds: number }

function options(argv: string[]): Options {
  const o: Options = { seconds: 20, pairs: 100, inflight: 10, rate: 2000, idle: 1000, rounds: 3 };
  for (const arg of argv) {
    const [key, value] = arg.replace(/^--/, '').split('=');
    if (key in o && Number(value) > 0) (o as unknown as Record<string, number>)[key] = Number(value);
  }
  return o;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** `count` consecutive free ports (a server with --workers takes base + k for its HTTP and cluster ports). */
async function freePorts(count: number): Promise<number> {
  for (;;) {
    const base = await freePort();
    const rest = await Promise.all(Array.from({ length: count - 1 }, (_, k) => canListen(base + k + 1)));
    if (rest.every(Boolean)) return base;
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

interface Node { process: ChildProcess; port: number; httpPort: number; workers: number }

async function startNode(dir: string, dbUri: string, name: string, extra: string[], workers = 1): Promise<Node> {
  const [port, httpPort, clusterPort] = [await freePort(), await freePorts(workers), await freePorts(workers)];
  const child = spawn(process.execPath, [
    ...(process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean),
    path.join(ROOT, 'dist', 'server', 'main.js'),
    '--virt-hosts=localhost', `--c2s-ports=${port}`, '--c2s-ssl-ports=0', '--s2s-ports=0', '--s2s-ssl-ports=0', '--ws-ports=0', '--bosh-ports=0',
    `--http-port=${httpPort}`, '--bind-address=127.0.0.1', `--user-db-uri=${dbUri}`, `--data-dir=${path.join(dir, name)}`,
    '--log-level=warn', `--cluster-hostname=${name}`, '--cluster-address=127.0.0.1', `--cluster-port=${clusterPort}`,
    ...(workers > 1 ? [`--workers=${workers}`] : []),
    ...extra,
  ], { stdio: ['ignore', 'inherit', 'inherit'] });
  const deadline = Date.now() + 30000;
  for (let k = 0; k < workers; k++) {
    for (;;) {
      const health = await get(httpPort + k, '/health').catch(() => undefined);
      // Workers are ready when each sees all of them.
      if (health?.status === 200 && (workers === 1 || JSON.parse(health.body).clusterNodes === workers)) break;
      if (Date.now() > deadline) throw new Error(`${name} did not become healthy`);
      await sleep(200);
    }
  }
  return { process: child, port, httpPort, workers };
}

function get(port: number, pathname: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: pathname }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/**
 * `sent` counts every message of the run, warm-up included; the rest is the measured window,
 * including the CPU time the server processes and the generator spent per delivered message (µs).
 */
interface Result { messages: number; sent: number; perSecond: number; p50: number; p99: number; max: number; serverCpuUs: number; generatorCpuUs: number }

/** CPU seconds (user + system) a process and its children (--workers) have used so far, from /proc (Linux). */
function cpuSeconds(pid: number | undefined): number {
  if (!pid) return 0;
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const fields = readFileSync(`/proc/${entry}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
      // fields[1] is the parent pid; utime and stime are in clock ticks (100 per second).
      if (Number(entry) === pid || Number(fields[1]) === pid) total += (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

/** Closed loop (rate 0: each sender keeps `inflight` messages outstanding) or a steady total rate. */
async function traffic(senders: LoadClient[], receivers: LoadClient[], o: Options, rate: number, servers: Node[]): Promise<Result> {
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  let next = 0;
  let measuring = false;
  let delivered = 0;
  const stopAt = { value: Infinity };
  const sendFrom = (i: number) => {
    const id = `m${++next}`;
    sentAt.set(id, performance.now());
    senders[i].send(receivers[i].jid, id);
  };
  receivers.forEach((receiver, i) => {
    receiver.onMessage = (id) => {
      const at = sentAt.get(id);
      if (at === undefined) return;
      sentAt.delete(id);
      if (measuring) {
        latencies.push(performance.now() - at);
        delivered++;
      }
      if (rate === 0 && Date.now() < stopAt.value) sendFrom(i);
    };
  });
  const warmup = 3000;
  const started = Date.now();
  stopAt.value = started + warmup + o.seconds * 1000;
  let timer: NodeJS.Timeout | undefined;
  if (rate === 0) {
    for (let i = 0; i < senders.length; i++) for (let k = 0; k < o.inflight; k++) sendFrom(i);
  } else {
    // Open loop: a tick every 10 ms sends rate/100 messages spread over the senders.
    let turn = 0;
    timer = setInterval(() => {
      for (let k = 0; k < rate / 100; k++) sendFrom(turn++ % senders.length);
    }, 10);
  }
  await sleep(warmup);
  measuring = true;
  const measuredFrom = performance.now();
  const serverCpuFrom = servers.reduce((sum, node) => sum + cpuSeconds(node.process.pid), 0);
  const generatorCpuFrom = process.cpuUsage();
  await sleep(o.seconds * 1000);
  measuring = false;
  const elapsed = (performance.now() - measuredFrom) / 1000;
  const serverCpu = servers.reduce((sum, node) => sum + cpuSeconds(node.process.pid), 0) - serverCpuFrom;
  const generatorUsage = process.cpuUsage(generatorCpuFrom);
  const generatorCpu = (generatorUsage.user + generatorUsage.system) / 1e6;
  clearInterval(timer);
  await sleep(1000);
  latencies.sort((a, b) => a - b);
  const perMessage = (cpu: number) => Math.round((cpu * 1e6) / Math.max(1, delivered));
  return {
    messages: delivered, sent: next, perSecond: Math.round(delivered / elapsed), p50: percentile(latencies, 50), p99: percentile(latencies, 99),
    max: latencies[latencies.length - 1] ?? NaN, serverCpuUs: perMessage(serverCpu), generatorCpuUs: perMessage(generatorCpu),
  };
}

/** The run with the median throughput (the lower middle one for an even count). */
function median(runs: Result[]): Result {
  const sorted = [...runs].sort((a, b) => a.perSecond - b.perSecond);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/**
 * Logs in `${prefix}0` ... in batches of 50, in the order given by `order` (default 0, 1, ...);
 * returns them indexed by number. With --workers, connections go to the workers in turn: a shuffled
 * order spreads each pair's two users over the workers at random.
 */
async function clients(count: number, prefix: string, port: number, order?: number[]): Promise<LoadClient[]> {
  const numbers = order ?? Array.from({ length: count }, (_, i) => i);
  const list: LoadClient[] = new Array(count);
  for (let i = 0; i < count; i += 50) {
    const batch = numbers.slice(i, i + 50).map((n) => [n, new LoadClient({ host: '127.0.0.1', port, domain: 'localhost', user: `${prefix}${n}`, password: PASSWORD, resource: 'bench' })] as const);
    await Promise.all(batch.map(([, c]) => c.connect()));
    for (const [n, c] of batch) list[n] = c;
  }
  return list;
}

function shuffled(count: number): number[] {
  const a = Array.from({ length: count }, (_, i) => i);
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** Bytes the nodes' cluster links have carried so far (sent and received, as each node counts them). */
async function linkBytes(nodes: Node[]): Promise<number> {
  let total = 0;
  for (const node of nodes) {
    const links = JSON.parse((await get(node.httpPort, '/status')).body).cluster.links as { bytesOut: number }[];
    for (const link of links) total += link.bytesOut;
  }
  return total;
}

async function rss(httpPort: number): Promise<number> {
  return JSON.parse((await get(httpPort, '/status')).body).memory.rss as number;
}

async function main(): Promise<void> {
  const o = options(process.argv.slice(2));
  const loadAtStart = os.loadavg();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xmpp-bench-'));
  const dbUri = `sqlite:${path.join(dir, 'bench.sqlite')}`;
  const storage = await openStorage(dbUri);
  const credentials = deriveScramCredentials(PASSWORD, 4096);
  const users = Math.max(o.pairs, o.idle);
  for (let i = 0; i < users; i++) {
    for (const prefix of ['s', 'r', 'idle']) await storage.users.create(`${prefix}${i}@localhost`, credentials).catch(() => undefined);
  }
  await storage.close();
  const lines: string[] = [];
  const children: ChildProcess[] = [];
  try {
    // One node: the steady rate and the idle connections once; then the closed-loop runs, one
    // node and two nodes for each strategy taking turns, `rounds` times.
    let single = await startNode(dir, dbUri, 'bench1.local', []);
    children.push(single.process);
    let senders = await clients(o.pairs, 's', single.port);
    let receivers = await clients(o.pairs, 'r', single.port);
    const steady = await traffic(senders, receivers, o, o.rate, [single]);
    console.log(`single node, steady ${o.rate}/s`, steady);
    for (const c of [...senders, ...receivers]) c.close();
    await sleep(500);
    const before = await rss(single.httpPort);
    const idle = await clients(o.idle, 'idle', single.port);
    await sleep(2000);
    const after = await rss(single.httpPort);
    const perConnection = Math.round((after - before) / o.idle / 1024);
    console.log(`memory per idle TLS connection: ${perConnection} KB`);
    for (const c of idle) c.close();
    single.process.kill('SIGTERM');
    await sleep(1000);

    const strategies = ['broadcast', 'online-users-caching'];
    const cores = os.availableParallelism();
    const singleRuns: Result[] = [];
    const workerRuns: Result[] = [];
    const crossRuns = new Map<string, { result: Result; linkBytesPerMessage: number }[]>(strategies.map((s) => [s, []]));
    for (let round = 1; round <= o.rounds; round++) {
      single = await startNode(dir, dbUri, `bench1-${round}.local`, []);
      children.push(single.process);
      senders = await clients(o.pairs, 's', single.port);
      receivers = await clients(o.pairs, 'r', single.port);
      const closed = await traffic(senders, receivers, o, 0, [single]);
      console.log(`round ${round}: single node, closed loop`, closed);
      singleRuns.push(closed);
      for (const c of [...senders, ...receivers]) c.close();
      single.process.kill('SIGTERM');
      await sleep(1000);

      // One machine, a worker per core (--workers): the users spread over them at random, so
      // most deliveries cross from one worker process to another.
      const machine = await startNode(dir, dbUri, `bench-w-${round}.local`, [], cores);
      children.push(machine.process);
      senders = await clients(o.pairs, 's', machine.port);
      receivers = await clients(o.pairs, 'r', machine.port, shuffled(o.pairs));
      const spread = await traffic(senders, receivers, o, 0, [machine]);
      console.log(`round ${round}: --workers ${cores}, closed loop`, spread);
      workerRuns.push(spread);
      for (const c of [...senders, ...receivers]) c.close();
      machine.process.kill('SIGTERM');
      await sleep(2000);

      // Two cluster nodes: every sender on one, every receiver on the other.
      for (const strategy of strategies) {
        const clusterArgs = ['--cluster-mode=true', `--sm-cluster-strategy-class=${strategy}`, '--min-cluster-nodes=2', '--cluster-heartbeat=1'];
        // /health waits for both (--min-cluster-nodes=2), so the two start together.
        const [a, b] = await Promise.all([startNode(dir, dbUri, `bench-a-${strategy}-${round}.local`, clusterArgs), startNode(dir, dbUri, `bench-b-${strategy}-${round}.local`, clusterArgs)]);
        children.push(a.process, b.process);
        senders = await clients(o.pairs, 's', a.port);
        receivers = await clients(o.pairs, 'r', b.port);
        await sleep(1000);
        const bytesBefore = await linkBytes([a, b]);
        const result = await traffic(senders, receivers, o, 0, [a, b]);
        const linkBytesPerMessage = ((await linkBytes([a, b])) - bytesBefore) / Math.max(1, result.sent);
        console.log(`round ${round}: two nodes (${strategy}), cross-node, closed loop`, result, `link bytes per message: ${linkBytesPerMessage.toFixed(0)}`);
        crossRuns.get(strategy)!.push({ result, linkBytesPerMessage });
        for (const c of [...senders, ...receivers]) c.close();
        a.process.kill('SIGTERM');
        b.process.kill('SIGTERM');
        await sleep(1000);
      }
    }
    const closed = median(singleRuns);
    const onCores = median(workerRuns);
    const crossMedians = strategies.map((strategy) => {
      const runs = crossRuns.get(strategy)!;
      return { strategy, result: median(runs.map((r) => r.result)), linkBytesPerMessage: runs.reduce((sum, r) => sum + r.linkBytesPerMessage, 0) / runs.length, runs };
    });

    const ms = (v: number) => `${v.toFixed(2)} ms`;
    lines.push(
      '# Benchmarks',
      '',
      `Measured by \`npm run bench\` (scripts/bench/run.ts) on ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'}, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}.`,
      `Server nodes are separate processes on loopback with SQLite; the load generator (this process) uses STARTTLS and SASL PLAIN,`,
      `${o.pairs} sender/receiver pairs, ${o.seconds} s measured after 3 s of warm-up. Latency is from send to receipt, measured by the generator.`,
      'Every message is archived for both parties (XEP-0313, on by default) in the same SQLite file: two rows written per message.',
      'Targets from DESIGN.md: ≥ 25,000 msgs/s at p99 ≤ 80 ms, p99 ≤ 1 ms at 2,000 msgs/s, ≤ 40 KB per idle connection, cross-node ≥ 0.8× single node.',
      '',
      '| scenario | messages/s | p50 | p99 | max | server CPU per message | generator CPU per message |',
      '|---|---|---|---|---|---|---|',
      `| one node, ${o.inflight} in flight per pair (median of ${o.rounds}) | ${closed.perSecond} | ${ms(closed.p50)} | ${ms(closed.p99)} | ${ms(closed.max)} | ${closed.serverCpuUs} µs | ${closed.generatorCpuUs} µs |`,
      `| one machine, --workers ${cores}, users spread over the workers at random (${Math.round(100 * (1 - 1 / cores))}% of deliveries cross workers), ${o.inflight} in flight (median of ${o.rounds}) | ${onCores.perSecond} (${(onCores.perSecond / closed.perSecond).toFixed(2)}× one node) | ${ms(onCores.p50)} | ${ms(onCores.p99)} | ${ms(onCores.max)} | ${onCores.serverCpuUs} µs | ${onCores.generatorCpuUs} µs |`,
      `| one node, steady ${o.rate}/s | ${steady.perSecond} | ${ms(steady.p50)} | ${ms(steady.p99)} | ${ms(steady.max)} | ${steady.serverCpuUs} µs | ${steady.generatorCpuUs} µs |`,
      ...crossMedians.map(({ strategy, result: cross }) => `| two nodes (${strategy}), senders on one, receivers on the other, ${o.inflight} in flight (median of ${o.rounds}) | ${cross.perSecond} (${(cross.perSecond / closed.perSecond).toFixed(2)}× one node) | ${ms(cross.p50)} | ${ms(cross.p99)} | ${ms(cross.max)} | ${cross.serverCpuUs} µs | ${cross.generatorCpuUs} µs |`),
      '',
      `Every closed-loop run, in the order they ran (messages/s): one node ${singleRuns.map((r) => r.perSecond).join(', ')}; --workers ${cores} ${workerRuns.map((r) => r.perSecond).join(', ')}; ${crossMedians.map(({ strategy, runs }) => `${strategy} ${runs.map((r) => r.result.perSecond).join(', ')}`).join('; ')}.`,
      '',
      `Cluster link bytes (both directions, both nodes) per message sent: ${crossMedians.map((r) => `${r.strategy} ${r.linkBytesPerMessage.toFixed(0)}`).join(', ')}.`,
      '',
      `Memory per idle authenticated TLS connection (server RSS growth over ${o.idle} connections): ${perConnection} KB.`,
      '',
      `Load average when the run began: ${loadAtStart.map((l) => l.toFixed(2)).join(' ')} (nothing else ran on purpose). ${anchorsNote()}`,
      '',
      'The load generator shares the 2-core machine with the server processes, so these figures are a floor for the server, not a ceiling:',
      'in the two-node run, two busy server processes and the generator share two cores (the one-node run has one server process).',
      'CPU per message is the CPU time (user + system) of all server processes (both nodes in the two-node runs), and of the generator,',
      'over the measured window, divided by the messages delivered: what a delivery costs, whatever the scheduler did to throughput.',
      'A message routed to another node travels as one link message; the receiving node acknowledges cumulatively, once per chunk of',
      'input, and the outcome (delivered, or nobody there) rides on those acknowledgements: no per-message round trip or timer.',
      '',
    );
    // npm run bench:mam keeps its section in the same file, between markers: it stays.
    const file = path.join(ROOT, 'BENCHMARKS.md');
    const previous = existsSync(file) ? readFileSync(file, 'utf8') : '';
    const archiveSection = /<!-- archive-bench:start -->[\s\S]*<!-- archive-bench:end -->\n?/.exec(previous)?.[0];
    writeFileSync(file, lines.join('\n') + (archiveSection ? `\n${archiveSection}` : ''));
    console.log('wrote BENCHMARKS.md');
  } finally {
    for (const child of children) child.kill('SIGTERM');
    await sleep(500);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What this run says of Prosody and ejabberd: the bench does not drive them yet. */
function anchorsNote(): string {
  const onPath = (name: string) => [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/bin'].some((dir) => existsSync(path.join(dir, name)));
  const installed = [onPath('prosody') && 'Prosody', onPath('ejabberdctl') && 'ejabberd'].filter(Boolean);
  return installed.length > 0
    ? `${installed.join(' and ')} ${installed.length > 1 ? 'are' : 'is'} installed, but this bench does not run ${installed.length > 1 ? 'them' : 'it'} yet: no anchors in this run.`
    : 'Prosody and ejabberd were not installed, so this run has no anchors.';
}

main().then(() => process.exit(0), (err) => {
  console.error(err);
  process.exit(1);
});
