import { StanzaError } from '../errors';
import type { Logger } from '../log';
import type { OfflineStore } from '../storage/types';

export interface OfflineWriterOptions {
  /** Messages waiting to be written, at most [10,000] (--offline-write-queue): past that, senders wait. */
  queueLimit: number;
  /** Messages per transaction [200]. */
  batchSize: number;
  /**
   * Transactions in flight at once [2]: a failover storm takes at most this many pool connections,
   * so logins, registry refreshes and everything else keep theirs.
   */
  concurrency: number;
  /** XEP-0160 queue length per user (--offline-queue-length); a full queue bounces the message. */
  perUserLimit: number;
  /**
   * How long a message may wait for the database (slow or down) before its sender gets an error
   * [60 s] (--offline-write-timeout). Nothing waits forever, nothing is dropped silently.
   */
  maxWaitMs: number;
}

export const OFFLINE_WRITER_DEFAULTS = { queueLimit: 10_000, batchSize: 200, concurrency: 2, maxWaitMs: 60_000 } as const;

/** Queued messages looked at for the next batch [2000]. */
const SCAN_LIMIT = 2000;

/** Back-off between attempts while the database fails: 250 ms doubling to 2 s. */
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 2000;

interface Item {
  user: string;
  stanzaXml: string;
  since: number;
  resolve(): void;
  reject(err: StanzaError): void;
}

/**
 * Offline storage writes, batched (XEP-0160). Every message is stored, or its sender gets an
 * error: a full user queue is `service-unavailable`, a database that stays unreachable past
 * maxWaitMs is `internal-server-error`, a writer that stays full past maxWaitMs is
 * `resource-constraint`. While the database is slow or down, the work waits here, bounded, and
 * `waitForRoom()` holds senders back.
 */
export class OfflineWriter {
  private queue: Item[] = [];
  private running = 0;
  /** Users with messages in a batch being written (at most one batch per user at a time). */
  private readonly writing = new Set<string>();
  private roomWaiters: (() => void)[] = [];
  private lastFailureLog = 0;
  private readonly storedListeners: ((users: string[]) => void)[] = [];
  readonly counters = { stored: 0, full: 0, failed: 0, batches: 0, retries: 0 };

  constructor(
    private readonly store: OfflineStore,
    private readonly opts: OfflineWriterOptions,
    private readonly logger: Logger,
  ) {}

  /** Told after each batch which users got new messages (so online ones get them at once). */
  onStored(listener: (users: string[]) => void): void {
    this.storedListeners.push(listener);
  }

  /** No room for one more message: waitForRoom() would wait. */
  get full(): boolean {
    return this.queue.length >= this.opts.queueLimit;
  }

  get pending(): number {
    return this.queue.length + this.running * this.opts.batchSize;
  }

  /** Resolves when there is room for one more message (at once when there is), or rejects after maxWaitMs. */
  async waitForRoom(): Promise<void> {
    const deadline = Date.now() + this.opts.maxWaitMs;
    while (this.queue.length >= this.opts.queueLimit) {
      const left = deadline - Date.now();
      if (left <= 0) {
        this.counters.failed++;
        throw new StanzaError('resource-constraint', 'offline storage is busy; try again later');
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.roomWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Stores one message for `user`; resolves once it is in the database, or rejects with the StanzaError for its sender. */
  async write(user: string, stanzaXml: string): Promise<void> {
    if (this.full) await this.waitForRoom();
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ user, stanzaXml, since: Date.now(), resolve, reject });
      this.pump();
    });
  }

  /**
   * Starts batches while fewer than `concurrency` run. A user's messages keep their order: none
   * goes into a batch while an earlier one of the same user waits or is being written (two
   * transactions can reach the database in either order, e.g. when one waits for a connection).
   */
  private pump(): void {
    while (this.running < this.opts.concurrency && this.queue.length > 0) {
      const batch: Item[] = [];
      const taken = new Set<Item>();
      const held = new Set<string>();
      // Looks at the oldest SCAN_LIMIT only: a flood for one user whose batch is in flight costs little.
      for (let i = 0; i < this.queue.length && i < SCAN_LIMIT && batch.length < this.opts.batchSize; i++) {
        const item = this.queue[i];
        if (this.writing.has(item.user) || held.has(item.user)) {
          held.add(item.user);
          continue;
        }
        batch.push(item);
        taken.add(item);
      }
      if (batch.length === 0) return;
      this.queue = this.queue.filter((item) => !taken.has(item));
      const users = new Set(batch.map((item) => item.user));
      for (const user of users) this.writing.add(user);
      this.running++;
      void this.writeBatch(batch).finally(() => {
        for (const user of users) this.writing.delete(user);
        this.running--;
        const waiters = this.roomWaiters;
        this.roomWaiters = [];
        for (const wake of waiters) wake();
        this.pump();
      });
    }
  }

  private async writeBatch(batch: Item[]): Promise<void> {
    for (let backoff = RETRY_MIN_MS; ; backoff = Math.min(backoff * 2, RETRY_MAX_MS)) {
      try {
        const results = await this.store.storeMany(batch.map(({ user, stanzaXml }) => ({ user, stanzaXml })), this.opts.perUserLimit);
        this.counters.batches++;
        const users = new Set<string>();
        batch.forEach((item, i) => {
          if (results[i]) {
            this.counters.stored++;
            users.add(item.user);
            item.resolve();
          } else {
            this.counters.full++;
            item.reject(new StanzaError('service-unavailable', 'offline storage is full'));
          }
        });
        if (users.size > 0) for (const listener of this.storedListeners) listener([...users]);
        return;
      } catch (err) {
        const now = Date.now();
        const expired = batch.filter((item) => now - item.since >= this.opts.maxWaitMs);
        for (const item of expired) {
          this.counters.failed++;
          item.reject(new StanzaError('internal-server-error', 'offline storage is unavailable'));
        }
        if (expired.length > 0) this.logger.error('offline messages answered with an error: storage unavailable', { messages: expired.length, err: String(err) });
        batch = batch.filter((item) => now - item.since < this.opts.maxWaitMs);
        if (batch.length === 0) return;
        this.counters.retries++;
        if (now - this.lastFailureLog > 5000) {
          this.lastFailureLog = now;
          this.logger.warn('offline storage write failed; retrying', { messages: batch.length, queued: this.queue.length, err: String(err) });
        }
        await new Promise((resolve) => setTimeout(resolve, backoff));
      }
    }
  }
}
