import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { Logger } from '../log';
import type { ClusterNodeRow, ClusterNodeStore } from '../storage/types';

export interface RegistryOptions {
  hostname: string;
  address: string;
  port: number;
  version: string;
  /** Seconds between upserts of our row. */
  heartbeat: number;
  /** Seconds after which a row is dead for everyone. */
  timeout: number;
  /** Client connections now, published in the row. */
  connections: () => number;
  /** Whether a live link to the node is up: a linked node is alive, however old its row looks. */
  isConnected: (node: string) => boolean;
  logger: Logger;
}

/**
 * This node's row in cluster_nodes, refreshed every heartbeat, and the table as last read: the
 * live rows (younger than the timeout, or of a node we hold a live link to). The table is
 * discovery and the admin's view; it never decides that a linked node is dead: after a database
 * outage every row looks old until its node writes again. Dead rows of nodes nobody here is linked
 * to are deleted by whichever node sees them first; deleting is idempotent, so no lease is needed.
 */
export class ClusterRegistry {
  /** Random per start: peers key the link handshake with it; a restarted node is a new identity. */
  readonly password = randomBytes(24).toString('base64');
  private live = new Map<string, ClusterNodeRow>();
  /** Every row as last read, stale ones included: the link handshake checks a peer's published password. */
  private rows = new Map<string, ClusterNodeRow>();
  private timer?: NodeJS.Timeout;
  private readonly startedAt = new Date();
  private lastCpu = process.cpuUsage();
  private lastCpuAt = process.hrtime.bigint();
  private listeners: ((live: ReadonlyMap<string, ClusterNodeRow>) => void)[] = [];
  private refreshing?: Promise<void>;
  private drainingSince?: Date;

  constructor(private readonly store: ClusterNodeStore, private readonly opts: RegistryOptions) {}

  /** Called with the live rows after every refresh. */
  onRefresh(listener: (live: ReadonlyMap<string, ClusterNodeRow>) => void): void {
    this.listeners.push(listener);
  }

  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.opts.heartbeat * 1000);
    this.timer.unref();
  }

  /** Deletes our row on a clean shutdown, so peers need not wait for the timeout. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.refreshing?.catch(() => undefined);
    await this.store.remove(this.opts.hostname).catch((err) => this.opts.logger.warn('could not delete our cluster_nodes row', { err: String(err) }));
  }

  /** Publishes that this node is draining (peers place nothing new on it); written at once. */
  async markDraining(): Promise<void> {
    this.drainingSince ??= new Date();
    // A refresh already under way may have written the row before the mark: write it again.
    await this.refreshing?.catch(() => undefined);
    await this.refresh();
  }

  /** Whether `node`'s row, as last read, says it is draining. */
  isDraining(node: string): boolean {
    if (node === this.opts.hostname) return this.drainingSince !== undefined;
    return this.live.get(node)?.drainingSince !== undefined;
  }

  liveNodes(): ReadonlyMap<string, ClusterNodeRow> {
    return this.live;
  }

  /**
   * A node's published password; reads the table again for a node we have not seen yet (it may
   * just have started). A row that looks stale still counts: the password is random per start, so
   * only the node that wrote it (and knows the secret) can pass the handshake, and a node whose
   * writes were slowed by a busy database must not be refused.
   */
  async passwordOf(hostname: string): Promise<string | undefined> {
    if (!this.rows.has(hostname)) await this.refresh();
    return this.rows.get(hostname)?.password;
  }

  /** Upserts our row, reads the table, deletes dead rows. Concurrent calls share one run. */
  refresh(): Promise<void> {
    this.refreshing ??= this.doRefresh().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async doRefresh(): Promise<void> {
    const now = new Date();
    try {
      await this.store.upsert(this.ownRow(now));
      const cutoff = new Date(now.getTime() - this.opts.timeout * 1000);
      const rows = await this.store.list();
      const live = new Map<string, ClusterNodeRow>();
      const linked: string[] = [];
      let dead = 0;
      for (const row of rows) {
        const connected = this.opts.isConnected(row.hostname);
        if (row.lastUpdate >= cutoff || row.hostname === this.opts.hostname || connected) live.set(row.hostname, row);
        else dead++;
        if (connected) linked.push(row.hostname);
      }
      this.rows = new Map(rows.map((row) => [row.hostname, row]));
      this.live = live;
      if (dead > 0) {
        const removed = await this.store.removeOlderThan(cutoff, linked);
        if (removed.length > 0) this.opts.logger.info('deleted dead cluster_nodes rows', { nodes: removed });
      }
    } catch (err) {
      // The database is out of reach: keep the last view; links and their heartbeats still work.
      this.opts.logger.warn('cluster registry refresh failed', { err: String(err) });
      return;
    }
    for (const listener of this.listeners) listener(this.live);
  }

  private ownRow(now: Date): ClusterNodeRow {
    const cpu = process.cpuUsage(this.lastCpu);
    const at = process.hrtime.bigint();
    const elapsedMicros = Number(at - this.lastCpuAt) / 1000;
    this.lastCpu = process.cpuUsage();
    this.lastCpuAt = at;
    return {
      hostname: this.opts.hostname,
      password: this.password,
      lastUpdate: now,
      port: this.opts.port,
      // Percent of one core, as Tigase reports it.
      cpuUsage: elapsedMicros > 0 ? Math.round(((cpu.user + cpu.system) / elapsedMicros) * 10000) / 100 : 0,
      memUsage: Math.round((process.memoryUsage().rss / os.totalmem()) * 10000) / 100,
      address: this.opts.address,
      version: this.opts.version,
      startedAt: this.startedAt,
      connections: this.opts.connections(),
      drainingSince: this.drainingSince,
    };
  }
}
