import type { Logger } from './log';
import type { LeaseStore } from './storage/types';

/** A lease lasts this many intervals: a node that died is replaced after at most that long [2.5]. */
const LEASE_INTERVALS = 2.5;

export interface Chore {
  name: string;
  run(): Promise<void>;
}

/**
 * Jobs that must run once per cluster (DESIGN "jobs that must run once"), such as expiring old
 * archived messages: every node ticks every `--chore-interval`, and for each chore the node that
 * holds (or takes, or renews) its lease in the database runs it. A node that dies stops renewing;
 * another takes the chore over once the lease ran out. A single node holds every lease.
 */
export class Chores {
  private readonly chores: Chore[] = [];
  private timer?: NodeJS.Timeout;
  private ticking?: Promise<void>;
  private stopped = false;
  /** Runs per chore on this node (for /metrics). */
  readonly runs = new Map<string, number>();

  constructor(
    private readonly leases: LeaseStore,
    private readonly node: string,
    /** Seconds between ticks (read at each tick: it may be reloaded). */
    private readonly interval: () => number,
    private readonly logger: Logger,
  ) {}

  add(chore: Chore): void {
    this.chores.push(chore);
    this.runs.set(chore.name, 0);
  }

  start(): void {
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.ticking;
    // Handing the leases back lets another node take the chores at its next tick.
    for (const chore of this.chores) await this.leases.release(chore.name, this.node).catch(() => undefined);
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.ticking = this.tick().finally(() => {
        this.ticking = undefined;
        this.schedule(this.interval() * 1000);
      });
    }, delayMs).unref();
  }

  private async tick(): Promise<void> {
    const ttl = this.interval() * 1000 * LEASE_INTERVALS;
    for (const chore of this.chores) {
      if (this.stopped) return;
      try {
        if (!(await this.leases.acquire(chore.name, this.node, ttl))) continue;
        await chore.run();
        this.runs.set(chore.name, (this.runs.get(chore.name) ?? 0) + 1);
      } catch (err) {
        // The database may be away: the next tick tries again.
        this.logger.warn('cluster chore failed', { chore: chore.name, err: String(err) });
      }
    }
  }
}
