/**
 * `--workers N`: one node process per core on one machine. The primary process forks N workers
 * (Node's cluster module, which shares the listening sockets: client, federation, component and
 * web ports take connections in every worker). Each worker is a full cluster node with a row of
 * its own in cluster_nodes (`<hostname>-w<k>`), its own cluster port and HTTP port (base + k - 1),
 * linked to the other workers and to the other machines' nodes like any node. Without
 * --cluster-mode the workers form a cluster of this machine alone, linked on loopback with a secret
 * the primary makes up at each start.
 *
 * The primary serves nothing itself: it prepares what the workers would otherwise race for (the
 * schema, the generated certificate), restarts a worker that dies (its users reconnect to the
 * others), forwards SIGTERM, SIGINT and SIGHUP, and passes `xmppctl drain` and `reload` (which reach
 * worker 1, the one with the control socket) on to the other workers.
 */
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import type { Config } from './config/types';
import type { Logger, RootLogger } from './log';
import { openStorage } from './storage/open-storage';
import { loadOrCreateCertificate, TicketKeys } from './tls';

/** The environment variable telling a forked worker its number, 1 to N. */
const WORKER_ENV = 'XMPP_WORKER';
/** A worker restarted this soon after its start counts as crashing at once: restarts back off [60 s]. */
const STABLE_AFTER_MS = 60_000;
/** Restart delays: 1 s, doubling for each crash in a row, at most 30 s. */
const RESTART_DELAY_MS = 1000;
const MAX_RESTART_DELAY_MS = 30_000;

/** The environment variable giving a forked worker the primary's TLS session ticket keys (base64). */
const TICKET_KEYS_ENV = 'XMPP_TLS_TICKET_KEYS';

/**
 * Messages between a worker and the primary (process.send): what xmppctl asks of worker 1, and
 * the primary's new TLS session ticket keys (base64).
 */
type WorkerMessage = { xmppWorkers: 'drain' } | { xmppWorkers: 'reload' } | { xmppWorkers: 'ticket-keys'; keys: string };

/** This process's worker number (1 to N), or undefined in the primary or a single process. */
export function workerIndex(): number | undefined {
  if (!cluster.isWorker) return undefined;
  const index = Number(process.env[WORKER_ENV]);
  return Number.isInteger(index) && index > 0 ? index : undefined;
}

/** The configuration of worker `index`: its own cluster node on this machine. */
export function workerConfig(config: Config, index: number): Config {
  const offset = index - 1;
  return {
    ...config,
    clusterMode: true,
    clusterHostname: `${config.clusterHostname}-w${index}`,
    // Workers of a single machine link on loopback; a machine in a cluster is reached at its address.
    clusterAddress: config.clusterMode ? config.clusterAddress : '127.0.0.1',
    clusterPort: config.clusterPort + offset,
    clusterAdvertisePort: config.clusterAdvertisePort + offset,
    httpPort: config.httpPort === 0 ? 0 : config.httpPort + offset,
    // xmppctl talks to worker 1; the commands it gives act on the whole cluster or come back here.
    controlSocket: index === 1 ? config.controlSocket : undefined,
  };
}

/** In a worker: ask the primary to pass a drain or a reload on to the other workers. */
export function tellOtherWorkers(what: 'drain' | 'reload'): void {
  const message: WorkerMessage = { xmppWorkers: what };
  process.send?.(message);
}

/**
 * In a worker: what the primary passes on from another worker, and the TLS session ticket keys
 * every worker shares (at once: those it was started with), so a client resumes its TLS session
 * on whichever worker its next connection reaches.
 */
export function onOtherWorkers(handlers: { drain(): void; ticketKeys(keys: Buffer): void }): void {
  const initial = process.env[TICKET_KEYS_ENV];
  if (initial) handlers.ticketKeys(Buffer.from(initial, 'base64'));
  process.on('message', (message: unknown) => {
    const m = message as Partial<WorkerMessage> | undefined;
    if (m?.xmppWorkers === 'drain') handlers.drain();
    else if (m?.xmppWorkers === 'ticket-keys' && 'keys' in m && typeof m.keys === 'string') handlers.ticketKeys(Buffer.from(m.keys, 'base64'));
  });
}

/**
 * Runs the primary process: prepares the shared state, forks `config.workers` workers, keeps them
 * running, and ends when they all have after a signal. Resolves with the exit code.
 */
export async function runPrimary(config: Config, logger: RootLogger): Promise<number> {
  await prepareSharedState(config, logger);
  // Without --cluster-mode the workers still authenticate their links, with a secret made up now.
  const env: Record<string, string> = {};
  if (!config.clusterMode && !config.clusterSecret) env.XMPP_CLUSTER_SECRET = randomBytes(32).toString('hex');

  const workers = new Map<number, { worker: Worker; startedAt: number }>();
  const crashes = new Map<number, number>();
  let stopping = false;
  let exitCode = 0;
  let allGone!: () => void;
  const gone = new Promise<void>((resolve) => (allGone = resolve));

  // TLS session ticket keys for every worker, replaced as a single node replaces its own.
  const tickets = new TicketKeys();
  tickets.onChange((keys) => {
    const message: WorkerMessage = { xmppWorkers: 'ticket-keys', keys: keys.toString('base64') };
    for (const { worker } of workers.values()) if (worker.isConnected()) worker.send(message);
  });
  void gone.then(() => tickets.stop());

  const fork = (index: number) => {
    const worker = cluster.fork({ ...env, [WORKER_ENV]: String(index), [TICKET_KEYS_ENV]: tickets.options.ticketKeys.toString('base64') });
    workers.set(index, { worker, startedAt: Date.now() });
    logger.info('worker started', { worker: index, pid: worker.process.pid });
    worker.on('message', (message: unknown) => relay(index, message as Partial<WorkerMessage>));
    worker.on('exit', (code, signal) => {
      const started = workers.get(index)?.startedAt ?? Date.now();
      workers.delete(index);
      if (stopping) {
        if (code !== 0) exitCode = 1;
        logger.info('worker stopped', { worker: index, code: code ?? undefined, signal: signal ?? undefined });
        if (workers.size === 0) allGone();
        return;
      }
      const inARow = Date.now() - started < STABLE_AFTER_MS ? (crashes.get(index) ?? 0) + 1 : 1;
      crashes.set(index, inARow);
      const delay = Math.min(MAX_RESTART_DELAY_MS, RESTART_DELAY_MS * 2 ** (inARow - 1));
      logger.error('worker died; restarting it (its users reconnect to the other workers meanwhile)', {
        worker: index,
        code: code ?? undefined,
        signal: signal ?? undefined,
        restartInMs: delay,
      });
      setTimeout(() => {
        if (!stopping) fork(index);
        else if (workers.size === 0) allGone();
      }, delay);
    });
  };
  const relay = (from: number, message: Partial<WorkerMessage>) => {
    if (message?.xmppWorkers === 'drain') {
      for (const [index, { worker }] of workers) if (index !== from) worker.send(message);
    } else if (message?.xmppWorkers === 'reload') {
      for (const [index, { worker }] of workers) if (index !== from) worker.process.kill('SIGHUP');
    }
  };
  const forward = (signal: NodeJS.Signals) => {
    for (const { worker } of workers.values()) worker.process.kill(signal);
  };
  const stop = (signal: NodeJS.Signals) => {
    if (!stopping) logger.info('stopping the workers', { signal, workers: workers.size });
    stopping = true;
    // SIGTERM is passed on: the workers drain (a second SIGTERM stops them at once). Ctrl-C in a
    // terminal has already sent SIGINT to every worker; a second SIGINT would kill them mid-stop.
    forward('SIGTERM');
    if (workers.size === 0) allGone();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    logger.reopen();
    forward('SIGHUP');
  });

  logger.info('starting workers', { workers: config.workers });
  for (let index = 1; index <= config.workers; index++) fork(index);
  await gone;
  logger.info('all workers stopped');
  return exitCode;
}

/**
 * What N workers starting at once would race for, done once: the schema (migrations) and the
 * self-signed certificate. Both are safe to race, but at a cost (lock waits, keys thrown away).
 */
async function prepareSharedState(config: Config, logger: Logger): Promise<void> {
  const storage = await openStorage(config.userDbUri, { logger: logger.category('db'), poolSize: 1 });
  await storage.close();
  await loadOrCreateCertificate({ certFile: config.tlsCert, keyFile: config.tlsKey, dataDir: config.dataDir, hosts: config.virtHosts, logger });
}
