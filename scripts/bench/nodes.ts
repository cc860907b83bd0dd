import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { deriveScramCredentials } from '../../server/c2s/sasl/scram';
import { openStorage } from '../../server/storage/open-storage';
import type { Storage } from '../../server/storage/types';

/** What the benchmarks share: server nodes as child processes, their ports, status and CPU. */

const ROOT = path.resolve(__dirname, '..', '..', '..');

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** `count` consecutive free ports (a server with --workers takes base + k for its HTTP and cluster ports). */
export async function freePorts(count: number): Promise<number> {
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

/**
 * A fresh folder with a SQLite database holding `users` (local parts, @localhost) with `password`
 * as SCRAM keys of `iterations`: what the benchmark's nodes share. The storage is left open for
 * more set-up; close it before the nodes start.
 */
export async function benchDatabase(prefix: string, users: string[], password: string, iterations: number): Promise<{ dir: string; dbUri: string; storage: Storage }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `xmpp-${prefix}-`));
  const dbUri = `sqlite:${path.join(dir, `${prefix}.sqlite`)}`;
  const storage = await openStorage(dbUri);
  const credentials = deriveScramCredentials(password, iterations);
  for (const user of users) await storage.users.create(`${user}@localhost`, credentials);
  return { dir, dbUri, storage };
}

export interface Node { process: ChildProcess; port: number; httpPort: number; workers: number }

export async function startNode(dir: string, dbUri: string, name: string, extra: string[], workers = 1): Promise<Node> {
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
  // Several nodes starting at once on a small machine take their time.
  const deadline = Date.now() + 60_000;
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

export function get(port: number, pathname: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: pathname }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** The pids of a process and all its descendants (--workers children; ejabberd's VM under ejabberdctl), from /proc (Linux). */
export function processTree(pid: number): number[] {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      parents.set(Number(entry), Number(readFileSync(`/proc/${entry}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) for (const [child, parent] of parents) if (parent === tree[i]) tree.push(child);
  return tree;
}

/** `value` summed over a process and its descendants (a process gone meanwhile counts 0). */
export function overTree(pid: number | undefined, value: (pid: number) => number): number {
  if (!pid) return 0;
  let total = 0;
  for (const p of processTree(pid)) {
    try {
      total += value(p);
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

/** CPU seconds (user + system) a process and its descendants have used so far. */
export function cpuSeconds(pid: number | undefined): number {
  return overTree(pid, (p) => {
    const fields = readFileSync(`/proc/${p}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
    // utime and stime are in clock ticks (100 per second).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  });
}

/** Resident memory (bytes) of a process and its descendants. */
export function treeRss(pid: number | undefined): number {
  return overTree(pid, (p) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0) * 1024);
}

/** Bytes the nodes' cluster links have carried so far (sent and received, as each node counts them). */
export async function linkBytes(nodes: Node[]): Promise<number> {
  let total = 0;
  for (const node of nodes) {
    const links = JSON.parse((await get(node.httpPort, '/status')).body).cluster.links as { bytesOut: number }[];
    for (const link of links) total += link.bytesOut;
  }
  return total;
}

/**
 * The archive rows the nodes (every worker of each) have dropped so far, and the times they held
 * their clients because the database fell behind (--mam-backlog-limit), from their /metrics.
 */
export async function archiveOutcomes(nodes: Node[]): Promise<{ dropped: number; holds: number }> {
  const totals = { dropped: 0, holds: 0 };
  // The anchors (Prosody, ejabberd) have no HTTP port here, and archive nothing.
  for (const node of nodes.filter((n) => n.httpPort > 0)) {
    for (let k = 0; k < node.workers; k++) {
      const lines = (await get(node.httpPort + k, '/metrics')).body.split('\n');
      const value = (pattern: RegExp) => lines.filter((l) => pattern.test(l)).reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
      totals.dropped += value(/^xmpp_mam_messages_total\{outcome="dropped"/);
      totals.holds += value(/^xmpp_mam_backlog_holds_total[{ ]/);
    }
  }
  return totals;
}

export async function rss(httpPort: number): Promise<number> {
  return JSON.parse((await get(httpPort, '/status')).body).memory.rss as number;
}
