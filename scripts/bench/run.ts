import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { installedAnchors, startEjabberd, startProsody } from './anchors';
import { hostSpeed, type HostSpeed } from './host-speed';
import { archiveOutcomes, benchDatabase, cpuSeconds, freePort, linkBytes, percentile, rss, sleep, startNode, treeRss, type Node } from './nodes';
import { nodeTlsFloor } from './tls-floor';
import { LoadClient } from './xmpp-load';

/**
 * Benchmarks of this server, run as separate node processes on loopback, with the load generator
 * in this process (DESIGN "Performance targets"): closed-loop throughput with 100 sender/receiver
 * pairs and 10 messages in flight each, latency at a steady 2,000 msgs/s (archived as by default,
 * then marked <no-store/> as the anchors archive nothing), the same across two cluster nodes, and
 * memory per idle TLS connection; the host's speed is probed between them (hostSpeed()). Writes
 * BENCHMARKS.md.
 *
 *   npm run bench [-- --seconds=20 --pairs=100 --inflight=10 --idle=800 --rounds=3 --logins=2000 --anchors=1]
 *
 * While tuning, --cluster=0 skips the two-node runs and --write=0 leaves BENCHMARKS.md alone.
 *
 * With Prosody and ejabberd installed from Debian (`apt-get install prosody ejabberd`, then
 * `service prosody stop; service ejabberd stop`), the same scenarios run against them in the same
 * run, with the same generator, and BENCHMARKS.md gets the ratios (--anchors=0 skips them).
 *
 * The closed-loop runs (one node, and two nodes for each strategy) take turns, `rounds` times, and
 * the medians are reported: on a shared 2-core host one run can be off by a third.
 *
 * BENCH_NODE_ARGS passes Node options to the server processes, e.g. to profile them:
 *   BENCH_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' npm run bench
 */

const ROOT = path.resolve(__dirname, '..', '..', '..');
const PASSWORD = 'bench-password';
/** SCRAM iterations of the accounts, ours and Prosody's: both servers' default [10000]. */
const ITERATIONS = 10_000;

interface Options { seconds: number; pairs: number; inflight: number; rate: number; idle: number; rounds: number; logins: number; anchors: number; cluster: number; write: number }

function options(argv: string[]): Options {
  const o: Options = { seconds: 20, pairs: 100, inflight: 10, rate: 2000, idle: 800, rounds: 3, logins: 2000, anchors: 1, cluster: 1, write: 1 };
  for (const arg of argv) {
    const [key, value] = arg.replace(/^--/, '').split('=');
    if (key in o && Number(value) >= 0 && value !== '') (o as unknown as Record<string, number>)[key] = Number(value);
  }
  return o;
}

/**
 * `sent` counts every message of the run, warm-up included; the rest is the measured window,
 * including the CPU time the server processes and the generator spent per delivered message (µs).
 */
interface Result {
  messages: number; sent: number; perSecond: number; p50: number; p99: number; p999: number; max: number; serverCpuUs: number; generatorCpuUs: number;
  /** Archive rows the server processes had dropped by the end of the run (ours; 0 for the anchors), and the times they held their clients instead. */
  archiveDropped: number; archiveHolds: number;
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
    // Open loop: a tick every millisecond sends what the rate owes by then (2 at 2,000/s), spread
    // over the senders. Ticks of 10 ms sent bursts of 20, whose last waited for the 19 before it:
    // that queueing was the generator's, not the server's, and no real population of users bursts so.
    let turn = 0;
    const openedAt = performance.now();
    timer = setInterval(() => {
      const owed = Math.floor(((performance.now() - openedAt) * rate) / 1000) - turn;
      for (let k = 0; k < owed; k++) sendFrom(turn++ % senders.length);
    }, 1);
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
  const archive = await archiveOutcomes(servers);
  latencies.sort((a, b) => a - b);
  const perMessage = (cpu: number) => Math.round((cpu * 1e6) / Math.max(1, delivered));
  return {
    messages: delivered, sent: next, perSecond: Math.round(delivered / elapsed), p50: percentile(latencies, 50), p99: percentile(latencies, 99), p999: percentile(latencies, 99.9),
    max: latencies[latencies.length - 1] ?? NaN, serverCpuUs: perMessage(serverCpu), generatorCpuUs: perMessage(generatorCpu),
    archiveDropped: archive.dropped, archiveHolds: archive.holds,
  };
}

/**
 * Steady windows per server [3], on the same connections: the window with the median p99 is
 * reported. One 20 s window's p99 ranged from 1.5 to 3.1 ms between runs on a quiet host.
 */
const STEADY_RUNS = 3;

async function steadyRuns(senders: LoadClient[], receivers: LoadClient[], o: Options, servers: Node[]): Promise<{ steady: Result; p99s: number[] }> {
  const runs: Result[] = [];
  for (let k = 0; k < STEADY_RUNS; k++) runs.push(await traffic(senders, receivers, o, o.rate, servers));
  const sorted = [...runs].sort((a, b) => a.p99 - b.p99);
  return { steady: sorted[Math.floor((sorted.length - 1) / 2)], p99s: runs.map((r) => r.p99) };
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

interface Logins { count: number; perSecond: number; p50: number; p99: number; securedP50: number }

/** `count` logins (STARTTLS, SASL PLAIN, bind, presence) with `inflight` at a time, each closed once done. */
async function logins(port: number, count: number, inflight: number, prefix: string): Promise<Logins> {
  const total: number[] = [];
  const secured: number[] = [];
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    for (let n = next++; n < count; n = next++) {
      const client = new LoadClient({ host: '127.0.0.1', port, domain: 'localhost', user: `${prefix}${n}`, password: PASSWORD, resource: 'bench' });
      await client.connect();
      total.push(client.timings.total);
      secured.push(client.timings.secured);
      client.close();
    }
  };
  await Promise.all(Array.from({ length: inflight }, worker));
  const elapsed = (performance.now() - started) / 1000;
  total.sort((a, b) => a - b);
  secured.sort((a, b) => a - b);
  return { count, perSecond: Math.round(count / elapsed), p50: percentile(total, 50), p99: percentile(total, 99), securedP50: percentile(secured, 50) };
}

/** What one server (ours or an anchor) did in the scenarios every server runs. */
interface ServerFigures { name: string; settings: string; closed: Result; closedRuns: Result[]; steady: Result; steadyP99s: number[]; logins: Logins; perConnectionKB: number }

/**
 * Memory per idle authenticated TLS connection, as the growth of the server's resident memory
 * from `idle`/2 open connections to `idle`: the first half warms the process up (code loaded,
 * heaps grown), so the second shows what one more connection costs. Run on a fresh process: after
 * traffic, memory freed by closed connections is reused and hides the cost.
 */
async function memoryPerConnection(name: string, port: number, o: Options, memory: () => Promise<number>): Promise<number> {
  const half = Math.floor(o.idle / 2);
  const first = await clients(half, 'idle', port);
  await sleep(2000);
  const before = await memory();
  const second = await clients(half, 'idle', port, Array.from({ length: half }, (_, i) => half + i));
  await sleep(2000);
  const perConnectionKB = Math.round(((await memory()) - before) / half / 1024);
  console.log(`${name}: memory per idle TLS connection: ${perConnectionKB} KB`);
  for (const c of [...first, ...second]) c?.close();
  await sleep(1000);
  return perConnectionKB;
}

/** The scenarios every server runs, against a server already listening on `port` whose accounts exist. */
async function scenarios(name: string, settings: string, node: Node, o: Options, memory: () => Promise<number>, probe: (when: string) => Promise<void>): Promise<ServerFigures> {
  const perConnectionKB = await memoryPerConnection(name, node.port, o, memory);
  const closedRuns: Result[] = [];
  for (let round = 1; round <= o.rounds; round++) {
    const senders = await clients(o.pairs, 's', node.port);
    const receivers = await clients(o.pairs, 'r', node.port);
    const closed = await traffic(senders, receivers, o, 0, [node]);
    console.log(`${name}, round ${round}: closed loop`, closed);
    closedRuns.push(closed);
    for (const c of [...senders, ...receivers]) c.close();
    await sleep(1000);
  }
  const senders = await clients(o.pairs, 's', node.port);
  const receivers = await clients(o.pairs, 'r', node.port);
  await probe(`before ${name}'s steady windows`);
  const { steady, p99s: steadyP99s } = await steadyRuns(senders, receivers, o, [node]);
  console.log(`${name}: steady ${o.rate}/s`, steady, steadyP99s);
  for (const c of [...senders, ...receivers]) c.close();
  await sleep(1000);
  const loginFigures = await logins(node.port, o.logins, 50, 'login');
  console.log(`${name}: logins`, loginFigures);
  await sleep(1000);
  return { name, settings, closed: median(closedRuns), closedRuns, steady, steadyP99s, logins: loginFigures, perConnectionKB };
}

/** Prosody and ejabberd, when installed: the same scenarios, one after the other. */
async function anchorFigures(dir: string, o: Options, accounts: string[], probe: (when: string) => Promise<void>): Promise<ServerFigures[]> {
  const installed = installedAnchors();
  const figures: ServerFigures[] = [];
  const register = (port: number) => async (names: string[], password: string) => {
    for (let i = 0; i < names.length; i += 50) {
      await Promise.all(names.slice(i, i + 50).map((user) => new LoadClient({ host: '127.0.0.1', port, domain: 'localhost', user, password, resource: 'reg' }).register()));
    }
  };
  for (const kind of ['prosody', 'ejabberd'] as const) {
    if (!installed[kind]) continue;
    const port = await freePort();
    let server;
    try {
      server = kind === 'prosody' ? await startProsody(path.join(dir, kind), port, ITERATIONS) : await startEjabberd(port, register(port));
    } catch (err) {
      console.error(`${kind} did not start: ${String((err as Error)?.message ?? err)}`);
      continue;
    }
    try {
      await server.createAccounts(accounts, PASSWORD);
      const node: Node = { process: server.process, port, httpPort: 0, workers: 1 };
      figures.push(await scenarios(server.name, server.settings, node, o, async () => treeRss(server.process.pid), probe));
    } catch (err) {
      console.error(`${server.name}: ${String((err as Error)?.stack ?? err)}`);
    } finally {
      await server.stop();
    }
  }
  return figures;
}

async function main(): Promise<void> {
  const o = options(process.argv.slice(2));
  const loadAtStart = os.loadavg();
  const speeds: { when: string; speed: HostSpeed }[] = [];
  const probe = async (when: string) => {
    const speed = await hostSpeed();
    speeds.push({ when, speed });
    console.log(`host speed ${when}:`, speed);
  };
  await probe('at the start');
  const accounts = [
    ...Array.from({ length: o.pairs }, (_, i) => [`s${i}`, `r${i}`]).flat(),
    ...Array.from({ length: o.idle }, (_, i) => `idle${i}`),
    ...Array.from({ length: o.logins }, (_, i) => `login${i}`),
  ];
  const { dir, dbUri, storage } = await benchDatabase('bench', accounts, PASSWORD, ITERATIONS);
  await storage.close();
  const lines: string[] = [];
  const children: ChildProcess[] = [];
  try {
    // One node: memory per idle connection, the steady rate and the logins once; then the closed-loop
    // runs, one node and two nodes for each strategy taking turns, `rounds` times.
    let single = await startNode(dir, dbUri, 'bench1.local', []);
    children.push(single.process);
    const perConnection = await memoryPerConnection('this server', single.port, o, () => rss(single.httpPort));
    const floor = await nodeTlsFloor(path.join(dir, 'tls-floor'), Math.floor(o.idle / 2));
    console.log('Node\'s own TLS sockets', floor);
    let senders = await clients(o.pairs, 's', single.port);
    let receivers = await clients(o.pairs, 'r', single.port);
    await probe('before our steady windows');
    const { steady, p99s: steadyP99s } = await steadyRuns(senders, receivers, o, [single]);
    console.log(`single node, steady ${o.rate}/s`, steady, steadyP99s);
    // The same with messages the archive leaves out (<no-store/>): the anchors archive nothing.
    for (const sender of senders) sender.noStore = true;
    const { steady: steadyUnarchived, p99s: unarchivedP99s } = await steadyRuns(senders, receivers, o, [single]);
    console.log(`single node, steady ${o.rate}/s, not archived`, steadyUnarchived, unarchivedP99s);
    for (const c of [...senders, ...receivers]) c.close();
    await sleep(500);
    const ourLogins = await logins(single.port, o.logins, 50, 'login');
    console.log('single node, logins', ourLogins);
    single.process.kill('SIGTERM');
    await sleep(1000);

    const strategies = ['broadcast', 'online-users-caching'];
    const cores = os.availableParallelism();
    const singleRuns: Result[] = [];
    const workerRuns: Result[] = [];
    const crossRuns = new Map<string, { result: Result; linkBytesPerMessage: number }[]>(strategies.map((s) => [s, []]));
    await probe('before the closed-loop rounds');
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
      for (const strategy of o.cluster > 0 ? strategies : []) {
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
    // The anchors last, after ours: the same generator, scenarios and accounts.
    const anchors = o.anchors > 0 ? await anchorFigures(dir, o, accounts, probe) : [];
    await probe('at the end');
    if (o.write === 0 || o.cluster === 0) {
      console.log('BENCHMARKS.md left alone (--write=0 or --cluster=0)');
      return;
    }
    const crossMedians = strategies.map((strategy) => {
      const runs = crossRuns.get(strategy)!;
      return { strategy, result: median(runs.map((r) => r.result)), linkBytesPerMessage: runs.reduce((sum, r) => sum + r.linkBytesPerMessage, 0) / runs.length, runs };
    });

    const ms = (v: number) => `${v.toFixed(2)} ms`;
    // A scenario's row; `base`: its messages/s also as a ratio to that run's.
    const row = (scenario: string, r: Result, base?: Result) =>
      `| ${scenario} | ${r.perSecond}${base ? ` (${(r.perSecond / base.perSecond).toFixed(2)}× one node)` : ''} | ${ms(r.p50)} | ${ms(r.p99)} | ${ms(r.p999)} | ${ms(r.max)} | ${r.serverCpuUs} µs | ${r.generatorCpuUs} µs |`;
    lines.push(
      '# Benchmarks',
      '',
      `Measured by \`npm run bench\` (scripts/bench/run.ts) on ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'}, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}.`,
      `Server nodes are separate processes on loopback with SQLite; the load generator (this process) uses STARTTLS and SASL PLAIN,`,
      `${o.pairs} sender/receiver pairs, ${o.seconds} s measured after 3 s of warm-up. Latency is from send to receipt, measured by the generator.`,
      'Every message is archived for both parties (XEP-0313, on by default) in the same SQLite file: two rows written per message, by each node\'s archive writer thread.',
      `Closed loop: each pair keeps ${o.inflight} messages in flight. Steady: every millisecond the generator sends what the rate owes by then (2 messages at 2,000/s), round-robin over the senders, in ${STEADY_RUNS} windows of ${o.seconds} s in a row; the window with the median p99 is reported (one window alone varies by 2x between runs).`,
      'Targets from DESIGN.md: ≥ 3× Prosody tuned in msgs/s with a node process per core, p99 ≤ 1 ms at 2,000 msgs/s, logins/s ≥ 2× Prosody, ≤ 30 KB per idle TLS connection, cross-node ≥ 0.8× one node.',
      '',
      '| scenario | messages/s | p50 | p99 | p99.9 | max | server CPU per message | generator CPU per message |',
      '|---|---|---|---|---|---|---|---|',
      row(`one node, ${o.inflight} in flight per pair (median of ${o.rounds})`, closed),
      row(`one machine, --workers ${cores}, users spread over the workers at random (${Math.round(100 * (1 - 1 / cores))}% of deliveries cross workers), ${o.inflight} in flight (median of ${o.rounds})`, onCores, closed),
      row(`one node, steady ${o.rate}/s (of ${STEADY_RUNS} windows, the one with the median p99)`, steady),
      row(`one node, steady ${o.rate}/s, messages marked \`<no-store/>\` (not archived, like the anchors'; ${STEADY_RUNS} more windows on the same connections)`, steadyUnarchived),
      ...crossMedians.map(({ strategy, result: cross }) => row(`two nodes (${strategy}), senders on one, receivers on the other, ${o.inflight} in flight (median of ${o.rounds})`, cross, closed)),
      '',
      `Every closed-loop run, in the order they ran (messages/s): one node ${singleRuns.map((r) => r.perSecond).join(', ')}; --workers ${cores} ${workerRuns.map((r) => r.perSecond).join(', ')}; ${crossMedians.map(({ strategy, runs }) => `${strategy} ${runs.map((r) => r.result.perSecond).join(', ')}`).join('; ')}.`,
      '',
      `Every steady window's p99, in the order they ran: ${steadyP99s.map(ms).join(', ')}; not archived: ${unarchivedP99s.map(ms).join(', ')}.`,
      '',
      `Archive rows dropped, over every run of ours: ${[...singleRuns, ...workerRuns, steady, ...crossMedians.flatMap(({ runs }) => runs.map((r) => r.result))].reduce((n, r) => n + r.archiveDropped, 0)}. Where the archive writes fell behind, the nodes stopped reading from their clients instead (--mam-backlog-limit): closed loop, in the order they ran, ${[...singleRuns, ...workerRuns].map((r) => r.archiveHolds).join(', ')} times (one node, then --workers); ${crossMedians.map(({ strategy, runs }) => `${strategy} ${runs.map((r) => r.result.archiveHolds).join(', ')}`).join('; ')}; steady ${steady.archiveHolds}. ${[...singleRuns, ...workerRuns].some((r) => r.archiveHolds > 0) ? 'A closed-loop run with holds went as fast as its archive database took rows, not faster.' : 'No closed-loop run had to wait for its archive database.'}`,
      '',
      `Cluster link bytes (both directions, both nodes) per message sent: ${crossMedians.map((r) => `${r.strategy} ${r.linkBytesPerMessage.toFixed(0)}`).join(', ')}.`,
      '',
      `Memory per idle authenticated TLS connection (server RSS growth from ${Math.floor(o.idle / 2)} to ${2 * Math.floor(o.idle / 2)} open connections, on a fresh process): ${perConnection} KB.`,
      `The floor under it, measured the same way (scripts/bench/tls-floor.ts): a bare Node server that upgrades plain connections to TLS as STARTTLS does holds ${floor.atRest} KB per connection at rest, and ${floor.afterFlush} KB once it has sent one ${floor.flushBytes}-byte flush (our stream features after STARTTLS are about that size): Node's encrypted-output buffer starts at 1 KiB and, once a flush outgrows it, keeps 16 KiB more for good.`,
      '',
      `Logins (STARTTLS, SASL PLAIN against SCRAM keys of ${ITERATIONS} iterations, bind, presence; ${o.logins} logins, 50 at a time, one node): ${ourLogins.perSecond}/s, p50 ${ms(ourLogins.p50)} (up to the encrypted stream's features ${ms(ourLogins.securedP50)}), p99 ${ms(ourLogins.p99)}.`,
      '',
      `Load average when the run began: ${loadAtStart.map((l) => l.toFixed(2)).join(' ')} (nothing else ran on purpose). ${anchorsNote(anchors.length)}`,
      '',
      'Host speed, probed by the generator between the phases (scripts/bench/host-speed.ts; lower is faster in each): a fixed piece of CPU work, a 100-byte round trip over loopback TCP (median / p99 of 2,000), and a 4 KB write with fdatasync (median of 50). The same host has taken from 1× to 3× as long within a day, and latency moved with it while the load average did not:',
      '',
      '| when | CPU work | loopback round trip | synced 4 KB write |',
      '|---|---|---|---|',
      ...speeds.map(({ when, speed }) => `| ${when} | ${speed.cpuMs} ms | ${speed.loopbackUs.p50} / ${speed.loopbackUs.p99} µs | ${speed.syncWriteUs} µs |`),
      '',
      ...anchorSection(anchors, { closed, onCores, cores, steady, steadyUnarchived, logins: ourLogins, perConnectionKB: perConnection }, o),
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

/** What this run says of Prosody and ejabberd. */
function anchorsNote(ran: number): string {
  if (ran > 0) return 'Prosody and ejabberd (where installed) ran after ours in the same run: see "Anchors".';
  const installed = installedAnchors();
  return installed.prosody || installed.ejabberd ? 'The anchors were skipped (--anchors=0).' : 'Prosody and ejabberd were not installed (apt-get install prosody ejabberd), so this run has no anchors.';
}

/** The anchors' figures beside ours, and the ratios. */
function anchorSection(anchors: ServerFigures[], ours: { closed: Result; onCores: Result; cores: number; steady: Result; steadyUnarchived: Result; logins: Logins; perConnectionKB: number }, o: Options): string[] {
  if (anchors.length === 0) return [];
  const ms = (v: number) => `${v.toFixed(2)} ms`;
  const row = (name: string, closed: Result, steady: Result, l: Logins, kb: number) =>
    `| ${name} | ${closed.perSecond} | ${ms(closed.p99)} | ${ms(steady.p50)} / ${ms(steady.p99)} / ${ms(steady.p999)} | ${l.perSecond} (p50 ${ms(l.p50)}, STARTTLS phase ${ms(l.securedP50)}) | ${kb} KB |`;
  const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}×` : 'n/a');
  return [
    '## Anchors',
    '',
    `Run after ours, on the same host, with the same generator, accounts and scenarios (closed loop: median of ${o.rounds}, ${o.pairs} pairs, ${o.inflight} in flight each; steady ${o.rate}/s; ${o.logins} logins, 50 at a time; memory from ${Math.floor(o.idle / 2)} to ${2 * Math.floor(o.idle / 2)} idle TLS connections):`,
    '',
    '| server | msgs/s, closed loop | p99 there | steady: p50 / p99 / p99.9 | logins/s | memory per idle TLS connection |',
    '|---|---|---|---|---|---|',
    row('this server, one node', ours.closed, ours.steady, ours.logins, ours.perConnectionKB),
    `| this server, one node, messages not archived (\`<no-store/>\`) | | | ${ms(ours.steadyUnarchived.p50)} / ${ms(ours.steadyUnarchived.p99)} / ${ms(ours.steadyUnarchived.p999)} | | |`,
    `| this server, --workers ${ours.cores} | ${ours.onCores.perSecond} | ${ms(ours.onCores.p99)} | | | |`,
    ...anchors.map((a) => row(`${a.name} (${a.settings})`, a.closed, a.steady, a.logins, a.perConnectionKB)),
    '',
    ...anchors.map((a) => `Against ${a.name}: msgs/s ${ratio(ours.closed.perSecond, a.closed.perSecond)} (one node), ${ratio(ours.onCores.perSecond, a.closed.perSecond)} (--workers ${ours.cores}); logins/s ${ratio(ours.logins.perSecond, a.logins.perSecond)}; memory per connection ${ratio(ours.perConnectionKB, a.perConnectionKB)}; steady p99 ${ratio(ours.steady.p99, a.steady.p99)} (${ratio(ours.steadyUnarchived.p99, a.steady.p99)} with our messages not archived, as theirs are not). ${a.name}'s closed-loop runs: ${a.closedRuns.map((r) => r.perSecond).join(', ')}; steady windows' p99: ${a.steadyP99s.map(ms).join(', ')}.`),
    '',
    'Neither anchor archives messages here (neither does by default); this server archives every message for both parties (XEP-0313 on by default).',
    '',
  ];
}

main().then(() => process.exit(0), (err) => {
  console.error(err);
  process.exit(1);
});
