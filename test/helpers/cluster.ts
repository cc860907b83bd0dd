import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { deriveScramCredentials } from '../../server/c2s/sasl/scram';
import { openStorage } from '../../server/storage/open-storage';
import type { Storage } from '../../server/storage/types';
import { connectClient, type XmppClient } from './client';
import { seedTestCertificate } from './certificate';
import { linkProxy, type LinkProxy } from './link-proxy';
import { PASSWORD, freePort } from './server';

const ROOT = path.resolve(__dirname, '..', '..');
export const MAIN = path.join(ROOT, 'dist', 'server', 'main.js');
export const CUSTOM_STRATEGY = path.join(ROOT, 'strategies', 'examples', 'least-known-nodes.js');
export const CLUSTER_SECRET = 'test-cluster-secret-0123456789';
/** No federation listeners (5269 is one port for the whole machine); the previous release knows no such keys. */
const NO_FEDERATION = ['--s2s-ports=0', '--s2s-ssl-ports=0'];

type Test = { teardown(fn: () => unknown): void };

/**
 * Fast timings for tests: rows refreshed every 0.5 s and dead after 2 s; links beat every
 * 0.25 s and are dead after 1.5 s of silence.
 */
export const FAST_CLUSTER_ARGS = [
  '--cluster-heartbeat=0.5',
  '--cluster-node-timeout=2',
  '--cluster-link-heartbeat=0.25',
  '--cluster-link-timeout=1.5',
  '--cluster-sync-timeout=5',
];

export interface NodeProcess {
  readonly index: number;
  readonly name: string;
  readonly c2sPort: number;
  readonly httpPort: number;
  readonly clusterPort: number;
  /** Its --data-dir (the control socket xmppctl talks to is xmppd.sock in it). */
  readonly dataDir: string;
  output: string;
  /** Everything the node printed, over all its starts (output is since the last start). */
  history: string;
  process?: ChildProcess;
  /**
   * Starts (or restarts) the process and waits until it has started; from `main` when given (another
   * build of the server, for upgrade tests), and from then on.
   */
  start(main?: string): Promise<void>;
  /** kill -9 */
  kill(): Promise<void>;
  /** SIGTERM and wait for the exit; resolves with the exit code (null when it was not running or died of a signal). */
  stop(): Promise<number | null>;
  /** SIGSTOP: the process freezes, its sockets stay open. */
  freeze(): void;
  /** SIGCONT after freeze(). */
  thaw(): void;
}

export interface TestCluster {
  nodes: NodeProcess[];
  /** Storage on the shared database, opened in the test process. */
  storage: Storage;
  dbUri: string;
  addUser(local: string): Promise<string>;
  /** A logged-in real client on node `index`. */
  login(index: number, local: string, opts?: { resource?: string; presence?: boolean; sasl2?: boolean }): Promise<XmppClient>;
  /** Waits until node `index` answers /health with `nodes` cluster nodes connected (itself included). */
  waitConnected(index: number, nodes: number, ms?: number): Promise<void>;
  /** GET a node's /status as JSON. */
  status(index: number): Promise<Record<string, any>>;
}

export interface ClusterOptions {
  nodes: number;
  dbUri: string;
  strategy: string;
  /** Extra arguments for every node, or per node. */
  args?: string[];
  nodeArgs?: (index: number) => string[];
  /** Node names (must not be localhost); default node1.cluster.test ... */
  names?: string[];
  /** Wait until every node sees all the others [true]. */
  waitConnected?: boolean;
  /** The server build the nodes start from [this checkout's dist/server/main.js]. */
  main?: string;
}

/**
 * Two nodes whose link runs through a proxy the test can cut (a partition): node1 dials node2
 * (the smaller name dials) on the proxy's port, which node2 advertises.
 */
export async function startPartitionableCluster(t: Test, opts: Omit<ClusterOptions, 'nodes' | 'nodeArgs'>): Promise<{ cluster: TestCluster; proxy: LinkProxy }> {
  const clusterPort = await freePort();
  const proxy = await linkProxy(clusterPort);
  t.teardown(() => proxy.close());
  const cluster = await startCluster(t, {
    ...opts,
    nodes: 2,
    nodeArgs: (i) => (i === 1 ? [`--cluster-port=${clusterPort}`, `--cluster-advertise-port=${proxy.port}`] : []),
  });
  return { cluster, proxy };
}

/** Starts N real node processes on loopback sharing one database, all connected to each other. */
export async function startCluster(t: Test, opts: ClusterOptions): Promise<TestCluster> {
  if (!existsSync(MAIN)) throw new Error('dist/ is missing: run npm run build (npm test does)');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xmpp-cluster-'));
  const storage = await openStorage(opts.dbUri);
  const clients: XmppClient[] = [];
  const nodes: NodeProcess[] = [];
  for (let i = 0; i < opts.nodes; i++) {
    nodes.push(await nodeProcess(i, dir, opts));
  }
  t.teardown(async () => {
    await Promise.all(clients.map((c) => c.stop().catch(() => undefined)));
    await Promise.all(nodes.map((n) => n.kill()));
    await storage.close();
    rmSync(dir, { recursive: true, force: true });
  });
  // One at a time: the first creates the schema, the rest find it.
  for (const node of nodes) await node.start();

  const cluster: TestCluster = {
    nodes,
    storage,
    dbUri: opts.dbUri,
    async addUser(local) {
      const jid = `${local}@localhost`;
      await storage.users.create(jid, deriveScramCredentials(PASSWORD, 4096));
      return jid;
    },
    async login(index, local, login = {}) {
      const client = await connectClient({
        service: `xmpp://127.0.0.1:${nodes[index].c2sPort}`,
        domain: 'localhost',
        local,
        password: PASSWORD,
        resource: login.resource,
        presence: login.presence,
        sasl2: login.sasl2,
      });
      clients.push(client);
      return client;
    },
    async waitConnected(index, count, ms = 20000) {
      const deadline = Date.now() + ms;
      let last = '';
      while (Date.now() < deadline) {
        const res = await httpGet(nodes[index].httpPort, '/health').catch((err) => ({ status: 0, body: String(err) }));
        last = `${res.status} ${res.body}`;
        if (res.status !== 0 && JSON.parse(res.body).clusterNodes === count) return;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      throw new Error(`node ${index} never saw ${count} nodes: ${last}\n${nodes[index].output.slice(-3000)}`);
    },
    async status(index) {
      const res = await httpGet(nodes[index].httpPort, '/status');
      return JSON.parse(res.body);
    },
  };
  if (opts.waitConnected ?? true) for (let i = 0; i < opts.nodes; i++) await cluster.waitConnected(i, opts.nodes);
  return cluster;
}

async function nodeProcess(index: number, dir: string, opts: ClusterOptions): Promise<NodeProcess> {
  const name = opts.names?.[index] ?? `node${index + 1}.cluster.test`;
  const [c2sPort, httpPort, clusterPort] = [await freePort(), await freePort(), await freePort()];
  const dataDir = path.join(dir, `node${index + 1}`);
  let main = opts.main ?? MAIN;
  const args = [
    '--virt-hosts=localhost',
    `--c2s-ports=${c2sPort}`,
    '--c2s-ssl-ports=0',
    ...NO_FEDERATION,
    '--ws-ports=0',
    '--bosh-ports=0',
    `--http-port=${httpPort}`,
    '--bind-address=127.0.0.1',
    `--user-db-uri=${opts.dbUri}`,
    `--data-dir=${dataDir}`,
    '--scram-iterations=4096',
    '--cluster-mode=true',
    `--cluster-hostname=${name}`,
    '--cluster-address=127.0.0.1',
    `--cluster-port=${clusterPort}`,
    `--cluster-secret=${CLUSTER_SECRET}`,
    `--sm-cluster-strategy-class=${opts.strategy}`,
    `--min-cluster-nodes=${opts.nodes}`,
    '--log-level=info',
    '--debug=cluster',
    ...FAST_CLUSTER_ARGS,
    ...(opts.args ?? []),
    ...(opts.nodeArgs?.(index) ?? []),
  ];
  const node: NodeProcess = {
    index,
    name,
    c2sPort,
    httpPort,
    clusterPort,
    dataDir,
    output: '',
    history: '',
    async start(from) {
      node.output = '';
      if (!args.some((a) => a.startsWith('--tls-cert='))) {
        const vhosts = args.filter((a) => a.startsWith('--virt-hosts=')).pop()!.slice('--virt-hosts='.length).split(',');
        await seedTestCertificate(dataDir, vhosts);
      }
      main = from ?? main;
      const known = main === MAIN ? args : args.filter((arg) => !NO_FEDERATION.includes(arg));
      const child = spawn(process.execPath, [main, ...known], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      node.process = child;
      const record = (d: Buffer) => {
        node.output += d;
        node.history += d;
      };
      child.stdout!.on('data', record);
      child.stderr!.on('data', record);
      const deadline = Date.now() + 30000;
      while (!/node started/.test(node.output)) {
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`${name} did not start:\n${node.output}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async kill() {
      const child = node.process;
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGCONT'); // a frozen process dies at once too
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      const child = node.process;
      if (!child || child.exitCode !== null || child.signalCode !== null) return null;
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      return exited;
    },
    freeze() {
      node.process?.kill('SIGSTOP');
    },
    thaw() {
      node.process?.kill('SIGCONT');
    },
  };
  return node;
}

export function httpGet(port: number, pathname: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: pathname, timeout: 3000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Polls `check` until it returns true (rejects with `what` after `ms`). */
export async function eventually(what: string, check: () => boolean | Promise<boolean>, ms = 10000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out: ${what}`);
}
