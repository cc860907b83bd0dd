import { Worker } from 'node:worker_threads';
import type { ArchiveRow } from './types';

/**
 * The thread's code. It is evaluated rather than loaded from a file so that it runs the same from
 * the compiled server and from the TypeScript sources the tests load; the driver's path comes
 * from the main thread's resolution of better-sqlite3.
 */
const THREAD_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
let db;
let appendAll;
function open() {
  db = new Database(workerData.filename);
  db.pragma('busy_timeout = ' + workerData.busyTimeoutMs);
  db.pragma('synchronous = NORMAL');
  db.pragma('cache_size = -' + workerData.cacheKib);
  const insert = db.prepare('INSERT INTO archive_messages (user, stanza_id, with_jid, with_resource, direction, created_at, stanza) VALUES (?, ?, ?, ?, ?, ?, ?)');
  appendAll = db.transaction((rows) => { for (const row of rows) insert.run(row); });
}
parentPort.on('message', ({ id, rows, close }) => {
  if (close) {
    if (db) db.close();
    parentPort.close();
    return;
  }
  try {
    if (!appendAll) open();
    appendAll.immediate(rows);
    parentPort.postMessage({ id });
  } catch (err) {
    if (db && !db.inTransaction) { try { db.close(); } catch {} }
    db = undefined;
    appendAll = undefined;
    parentPort.postMessage({ id, error: String((err && err.message) || err) });
  }
});
`;

/** How long close() lets the thread finish its batches before ending it [10000 ms]. */
const CLOSE_TIMEOUT_MS = 10_000;

interface Pending { resolve(): void; reject(err: Error): void }

/**
 * Writes archive rows into a SQLite file from a thread of its own. better-sqlite3 is synchronous:
 * on the main thread each batch (and each WAL checkpoint that follows a commit) held every stream
 * up, which was the bulk of a busy node's latency. The thread has its own connection to the same
 * file (WAL: readers on the main thread see each batch once it commits); SQLite's write lock is
 * shared with the main thread's connection through busy_timeout, as with another process.
 */
export class SqliteArchiveWriter {
  private worker?: Worker;
  private closed = false;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  constructor(
    private readonly filename: string,
    private readonly busyTimeoutMs: number,
    private readonly cacheKib: number,
  ) {}

  /** Resolves when `rows` are committed, in one transaction; rejects with SQLite's error. */
  append(rows: ArchiveRow[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the archive writer is closed'));
    const worker = this.thread();
    const id = this.nextId++;
    const values = rows.map((row) => [
      row.user, row.stanzaId, row.withJid, row.withResource ?? null, row.direction, row.at.toISOString(), row.stanza,
    ]);
    return new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.ref(); // a write in progress keeps the process up
      worker.postMessage({ id, rows: values });
    });
  }

  /** Lets the thread finish the batches it was given and close its connection; then ends it. */
  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = undefined;
    if (worker) {
      const exited = new Promise((resolve) => worker.once('exit', resolve));
      worker.postMessage({ close: true });
      const timer = setTimeout(() => void worker.terminate(), CLOSE_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    this.failAll(new Error('the archive writer was closed'));
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(THREAD_SOURCE, {
      eval: true,
      workerData: { driver: require.resolve('better-sqlite3'), filename: this.filename, busyTimeoutMs: this.busyTimeoutMs, cacheKib: this.cacheKib },
    });
    worker.unref();
    worker.on('message', ({ id, error }: { id: number; error?: string }) => {
      const waiting = this.pending.get(id);
      this.pending.delete(id);
      if (this.pending.size === 0) worker.unref();
      if (error === undefined) waiting?.resolve();
      else waiting?.reject(new Error(error));
    });
    // A thread that fails fails what it held; the next batch starts a new one.
    const lost = (err: Error) => {
      if (this.worker !== worker) return; // closed, or already replaced
      this.worker = undefined;
      this.failAll(err);
    };
    worker.on('error', lost);
    worker.on('exit', (code) => lost(new Error(`the archive writer thread exited (${code})`)));
    this.worker = worker;
    return worker;
  }

  private failAll(err: Error): void {
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const p of waiting) p.reject(err);
  }
}
