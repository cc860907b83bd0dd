import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { OnlineUsersCachingStrategy } from '../../strategies/online-users-caching';
import { benchDatabase, cpuSeconds, get, sleep, startNode, type Node } from './nodes';
import { LoadClient } from './xmpp-load';

/**
 * Checks docs/SCALING.md's model of cluster link traffic against real clusters of 2, 4 and 8 node
 * processes on this machine, for each strategy. Users log in spread over the nodes (user i on node
 * i mod N), each with `contacts` mutual roster contacts; then every user changes presence once,
 * random users send `messages` one-to-one messages to random full JIDs, and everybody logs out.
 * For each phase it counts the link messages all nodes sent (acknowledgements and heartbeats are
 * not counted), their bytes, and the nodes' CPU, and sets the counts beside what the model
 * predicts for exactly that placement. Writes the table into docs/SCALING.md.
 *
 *   npm run bench:scaling [-- --nodes=2,4,8 --users=240 --contacts=8 --messages=3000]
 */

const ROOT = path.resolve(__dirname, '..', '..', '..');
const PASSWORD = 'scaling-password';
const STRATEGIES = ['broadcast', 'online-users-caching'] as const;
type Strategy = (typeof STRATEGIES)[number];

interface Options { nodes: number[]; users: number; contacts: number; messages: number; write: boolean }

function options(argv: string[]): Options {
  const o: Options = { nodes: [2, 4, 8], users: 240, contacts: 8, messages: 3000, write: true };
  for (const arg of argv) {
    const [key, value] = arg.replace(/^--/, '').split('=');
    if (key === 'nodes') o.nodes = value.split(',').map(Number).filter((n) => n >= 2);
    else if (key === 'write') o.write = value !== '0';
    else if (key === 'users' || key === 'contacts' || key === 'messages') o[key] = Math.max(1, Number(value) || 0);
  }
  o.contacts = Math.min(o.contacts - (o.contacts % 2), o.users - 1);
  return o;
}

/** User i's contacts: the `contacts` nearest numbers around it (mutual, subscription both). */
function contactsOf(i: number, o: Options): number[] {
  const out: number[] = [];
  for (let k = 1; k <= o.contacts / 2; k++) out.push((i + k) % o.users, (i - k + o.users) % o.users);
  return out;
}

interface LinkTotals { stanzas: number; bytes: number; cpu: number; sessions: number; reasons: Record<string, number> }

async function linkTotals(nodes: Node[]): Promise<LinkTotals> {
  const totals: LinkTotals = { stanzas: 0, bytes: 0, cpu: 0, sessions: 0, reasons: {} };
  for (const node of nodes) {
    const status = JSON.parse((await get(node.httpPort, '/status')).body);
    const cluster = status.cluster;
    totals.sessions += status.sessions as number;
    for (const link of cluster.links as { stanzasOut: number; bytesOut: number }[]) {
      totals.stanzas += link.stanzasOut;
      totals.bytes += link.bytesOut;
    }
    for (const [reason, count] of Object.entries(cluster.forwarded as Record<string, number>)) totals.reasons[reason] = (totals.reasons[reason] ?? 0) + count;
    totals.cpu += cpuSeconds(node.process.pid);
  }
  return totals;
}

/**
 * Waits until the nodes hold `sessions` sessions and the link message count has held still over
 * three readings (what one login or logout set off has gone, and has been taken in by the peers).
 */
async function quiet(nodes: Node[], sessions: number): Promise<void> {
  let last = -1;
  for (let still = 0; still < 3;) {
    const now = await linkTotals(nodes);
    still = now.sessions === sessions && now.stanzas === last ? still + 1 : 0;
    last = now.stanzas;
    await sleep(20);
  }
}

/** Waits until the links carry nothing new for a second (what a phase set off has arrived). */
async function settled(nodes: Node[]): Promise<LinkTotals> {
  let last = await linkTotals(nodes);
  for (let quiet = 0; quiet < 4;) {
    await sleep(250);
    const now = await linkTotals(nodes);
    quiet = now.stanzas === last.stanzas ? quiet + 1 : 0;
    last = now;
  }
  return last;
}

interface Phase { name: string; operations: number; measured: number; predicted: number; bytes: number; cpuUs: number }

/**
 * The model (docs/SCALING.md): link messages each operation sends, for the placement at hand.
 * `remote(u, v)`: v's node is not u's. broadcast knows nothing of remote users, so whatever may be
 * elsewhere goes to all N-1 peers; online-users-caching sends only to the nodes that hold the user.
 */
class Model {
  constructor(private readonly n: number, private readonly strategy: Strategy, private readonly nodeOf: (u: number) => number) {}

  /** Peers a stanza for `to` goes to (from `from`'s node): all of them, or the one holding `to` when online elsewhere. */
  private peersFor(from: number, to: number, online: boolean): number {
    if (this.strategy === 'broadcast') return this.n - 1;
    return online && this.nodeOf(from) !== this.nodeOf(to) ? 1 : 0;
  }

  /** Session events go to every peer under both strategies (conflicts, carbons, the caching map). */
  private events(count: number): number {
    return count * (this.n - 1);
  }

  /**
   * Presence to the user's own bare JID, for its other resources (RFC 6121 §4.2.2, §4.5.2):
   * broadcast sends it to every peer; caching knows there is no other resource.
   */
  private self(): number {
    return this.strategy === 'broadcast' ? this.n - 1 : 0;
  }

  /**
   * A login: bind and first available presence (two session events); the presence to the user's
   * own bare JID and to each contact; a probe of the same; and each contact online on another node
   * answers the probe with its presence to the new session's full JID.
   */
  login(u: number, contacts: number[], online: Set<number>): number {
    let messages = this.events(2) + 2 * this.self();
    for (const c of contacts) {
      messages += 2 * this.peersFor(u, c, online.has(c));
      if (online.has(c) && this.nodeOf(c) !== this.nodeOf(u)) messages += this.strategy === 'broadcast' ? this.n - 1 : 1;
    }
    return messages;
  }

  /** A presence change (away): a session event, then the presence to the own bare JID and to each contact. */
  presence(u: number, contacts: number[], online: Set<number>): number {
    return this.events(1) + this.self() + contacts.reduce((sum, c) => sum + this.peersFor(u, c, online.has(c)), 0);
  }

  /** A message to a full JID: to the peer that holds it (caching), to all peers (broadcast), unless local. */
  message(from: number, to: number): number {
    if (this.nodeOf(from) === this.nodeOf(to)) return 0;
    return this.strategy === 'broadcast' ? this.n - 1 : 1;
  }

  /** A logout: the unbind (one session event), unavailable presence to the own bare JID and each contact. */
  logout(u: number, contacts: number[], online: Set<number>): number {
    return this.events(1) + this.self() + contacts.reduce((sum, c) => sum + this.peersFor(u, c, online.has(c)), 0);
  }
}

async function runCluster(dir: string, dbUri: string, n: number, strategy: Strategy, o: Options): Promise<{ phases: Phase[]; idleBytesPerSecond: number }> {
  const args = ['--cluster-mode=true', `--sm-cluster-strategy-class=${strategy}`, `--min-cluster-nodes=${n}`, '--cluster-heartbeat=1'];
  const nodes = await Promise.all(Array.from({ length: n }, (_, k) => startNode(dir, dbUri, `scale-${strategy}-${n}-${k}.local`, args)));
  const nodeOf = (u: number) => u % n;
  const model = new Model(n, strategy, nodeOf);
  const clients: LoadClient[] = [];
  const phases: Phase[] = [];
  try {
    // Link set-up and session sync are done before anything is counted.
    let before = await settled(nodes);
    const idleFrom = await linkTotals(nodes);
    await sleep(5000);
    const idleBytesPerSecond = ((await linkTotals(nodes)).bytes - idleFrom.bytes) / 5;
    before = await settled(nodes);
    const phase = async (name: string, operations: number, predicted: number, run: () => Promise<void>) => {
      console.log(`${n} nodes, ${strategy}: ${name} ...`);
      await run();
      const after = await settled(nodes);
      const reasons = Object.fromEntries(Object.entries(after.reasons).map(([r, c]) => [r, (c - (before.reasons[r] ?? 0)) / operations]).filter(([, c]) => c !== 0));
      console.log(`${n} nodes, ${strategy}, ${name}: link messages per operation by reason`, reasons);
      phases.push({
        name, operations, predicted: predicted / operations, measured: (after.stanzas - before.stanzas) / operations,
        bytes: (after.bytes - before.bytes) / operations, cpuUs: ((after.cpu - before.cpu) * 1e6) / operations,
      });
      before = after;
    };

    // Logins one at a time in order, so the model knows who was online at each.
    const online = new Set<number>();
    let predicted = 0;
    await phase('login (bind, presence, probes)', o.users, 0, async () => {
      for (let u = 0; u < o.users; u++) {
        predicted += model.login(u, contactsOf(u, o), online);
        const client = new LoadClient({ host: '127.0.0.1', port: nodes[nodeOf(u)].port, domain: 'localhost', user: `u${u}`, password: PASSWORD, resource: 'scale' });
        await client.connect();
        clients.push(client);
        online.add(u);
        // The next login's model takes this one as known everywhere.
        await quiet(nodes, online.size);
      }
    });
    phases[phases.length - 1].predicted = predicted / o.users;

    predicted = 0;
    for (let u = 0; u < o.users; u++) predicted += model.presence(u, contactsOf(u, o), online);
    await phase('presence change (away)', o.users, predicted, async () => {
      for (const client of clients) client.presenceShow('away');
    });

    // Messages from random users to random others' full JIDs, 100 in flight; every one delivered.
    const pairs = Array.from({ length: o.messages }, () => {
      const from = Math.floor(Math.random() * o.users);
      const to = (from + 1 + Math.floor(Math.random() * (o.users - 1))) % o.users;
      return [from, to] as const;
    });
    predicted = pairs.reduce((sum, [from, to]) => sum + model.message(from, to), 0);
    await phase('message to a full JID', o.messages, predicted, async () => {
      let delivered = 0;
      let next = 0;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${delivered} of ${o.messages} messages delivered`)), 120_000);
        const send = () => {
          const k = next++;
          if (k >= o.messages) return;
          const [from, to] = pairs[k];
          clients[from].send(clients[to].jid, `m${k}`);
        };
        for (const client of clients) {
          client.onMessage = () => {
            delivered++;
            if (delivered === o.messages) {
              clearTimeout(timer);
              resolve();
            } else send();
          };
        }
        for (let k = 0; k < 100; k++) send();
      });
    });

    predicted = 0;
    for (let u = 0; u < o.users; u++) {
      online.delete(u);
      predicted += model.logout(u, contactsOf(u, o), online);
    }
    await phase('logout (unbind, unavailable)', o.users, predicted, async () => {
      for (const [u, client] of clients.entries()) {
        await client.closeAndWait();
        await quiet(nodes, o.users - u - 1);
      }
    });
    return { phases, idleBytesPerSecond };
  } finally {
    for (const client of clients) client.destroy();
    for (const node of nodes) node.process.kill('SIGTERM');
    await sleep(1500);
  }
}

/**
 * Heap bytes one remote resource costs in the online-users-caching map: 200,000 entries of
 * realistic JIDs put into the strategy itself, measured after full collections.
 */
function cacheEntryBytes(): number {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const count = 200_000;
  gc();
  const before = process.memoryUsage().heapUsed;
  const strategy = new OnlineUsersCachingStrategy({ localNode: 'node-a.example.com', connectedNodes: () => ['node-b.example.com'] });
  for (let i = 0; i < count; i++) {
    strategy.sessionEvent({
      type: 'bound',
      entry: { jid: `user${i}@example.com/conversations.${(i * 7919).toString(36)}`, node: 'node-b.example.com', available: true, priority: 0, boundAt: Date.now(), carbons: true },
    });
  }
  gc();
  const bytes = (process.memoryUsage().heapUsed - before) / count;
  if (strategy.stats().cachedResources !== count) throw new Error('the map did not take every entry');
  return bytes;
}

async function main(): Promise<void> {
  const o = options(process.argv.slice(2));
  const loadAtStart = os.loadavg();
  const { dir, dbUri, storage } = await benchDatabase('scaling', Array.from({ length: o.users }, (_, u) => `u${u}`), PASSWORD, 4096);
  for (let u = 0; u < o.users; u++) {
    for (const c of contactsOf(u, o)) await storage.roster.setItem(`u${u}@localhost`, { jid: `u${c}@localhost`, subscription: 'both', groups: [] });
  }
  await storage.close();
  const entryBytes = cacheEntryBytes();
  console.log(`online-users-caching: ${entryBytes.toFixed(0)} heap bytes per remote resource`);
  const rows: string[] = [];
  try {
    for (const n of o.nodes) {
      for (const strategy of STRATEGIES) {
        const { phases, idleBytesPerSecond } = await runCluster(dir, dbUri, n, strategy, o);
        for (const p of phases) {
          const off = p.predicted === 0 ? (p.measured === 0 ? '0%' : 'n/a') : `${(((p.measured - p.predicted) / p.predicted) * 100).toFixed(1)}%`;
          rows.push(`| ${n} | ${strategy} | ${p.name} | ${p.predicted.toFixed(2)} | ${p.measured.toFixed(2)} | ${off} | ${Math.round(p.bytes)} | ${Math.round(p.cpuUs)} µs |`);
          console.log(rows[rows.length - 1]);
        }
        rows.push(`| ${n} | ${strategy} | idle: heartbeats, bytes/s for the whole cluster | | | | ${Math.round(idleBytesPerSecond)} | |`);
        console.log(rows[rows.length - 1]);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const section = [
    '<!-- scaling-validation:start -->',
    `Measured by \`npm run bench:scaling\` (scripts/bench/scaling.ts) on ${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'}, Node ${process.version}:`,
    `${o.users} users spread over the nodes (user i on node i mod N), ${o.contacts} mutual contacts each, ${o.messages} messages between random users, SQLite.`,
    `Load average when the run began: ${loadAtStart.map((l) => l.toFixed(2)).join(' ')}. Link messages are counted by every node as it sends them; acknowledgements and heartbeats are not link messages (their bytes are in the byte column).`,
    '',
    `online-users-caching map: ${entryBytes.toFixed(0)} bytes of heap per remote resource (200,000 entries put into the strategy, measured after full collections).`,
    '',
    'CPU is that of all nodes per operation; for logins and logouts it includes answering the status requests this script polls between two operations.',
    '',
    '| nodes | strategy | operation (per user or message) | model: link messages | measured | off by | link bytes | cluster CPU |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
    '<!-- scaling-validation:end -->',
  ].join('\n');
  if (!o.write) return;
  const file = path.join(ROOT, 'docs', 'SCALING.md');
  const doc = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const marked = /<!-- scaling-validation:start -->[\s\S]*<!-- scaling-validation:end -->/;
  writeFileSync(file, marked.test(doc) ? doc.replace(marked, section) : `${doc}\n${section}\n`);
  console.log('wrote docs/SCALING.md');
}

main().then(() => process.exit(0), (err) => {
  console.error(err);
  process.exit(1);
});
