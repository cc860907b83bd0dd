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
  logger: Logger;
}

/**
 * This node's row in cluster_nodes, refreshed every heartbeat, and the table as last read: the
 * live rows (younger than the timeout). Dead rows are deleted by whichever node sees them first;
 * deleting is idempotent, so no lease is needed.
 */
export class ClusterRegistry {
  /** Random per start: peers key the link handshake with it; a restarted node is a new identity. */
  readonly password = randomBytes(24).toString('base64');
  private live = new Map<string, ClusterNodeRow>();
  private timer?: NodeJS.Timeout;
  private readonly startedAt = new Date();
  private lastCpu = process.cpuUsage();
  private lastCpuAt = process.hrtime.bigint();
  private listeners: ((live: ReadonlyMap<string, ClusterNodeRow>) => void)[] = [];
  private refreshing?: Promise<void>;

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

  liveNodes(): ReadonlyMap<string, ClusterNodeRow> {
    return this.live;
  }

  /** A live node's password; reads the table again for a node we have not seen yet (it may just have started). */
  async passwordOf(hostname: string): Promise<string | undefined> {
    if (!this.live.has(hostname)) await this.refresh();
    return this.live.get(hostname)?.password;
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
      const dead: string[] = [];
      for (const row of rows) {
        if (row.lastUpdate >= cutoff || row.hostname === this.opts.hostname) live.set(row.hostname, row);
        else dead.push(row.hostname);
      }
      if (dead.length > 0) {
        const removed = await this.store.removeOlderThan(cutoff);
        if (removed.length > 0) this.opts.logger.info('deleted dead cluster_nodes rows', { nodes: removed });
      }
      this.live = live;
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
    };
  }
}
