import { Worker } from 'node:worker_threads';
import { mainThreadWaiting } from './sqlite-lock-waiters';
import type { ArchiveRow } from './types';

/**
 * Longest staged rows wait for their transaction [100 ms]. Each commit rewrites the index pages its
 * rows touch, so bigger transactions cost less per row: at 2,000 messages/s a node spent about 330 µs
 * of CPU per message with 20 ms batches and 230 µs with 100 ms.
 */
const COMMIT_DELAY_MS = 100;
/**
 * Staged rows that are committed at once, without waiting [5000]. Above a few hundred rows a second
 * the same holds: a transaction writes each index page its rows touch once, so more rows share each
 * page write. When the archive is the bottleneck (a closed loop on two cores, clients held by
 * --mam-backlog-limit), one node delivered 12,900 to 13,300 messages/s with 1,000-row transactions
 * and 14,900 to 16,200 with 5,000 to 6,000 (about 0.2 s of the write lock each; the main thread's
 * waiting statements go first, MAX_YIELD_MS).
 */
const COMMIT_ROWS = 5000;
/** Attempts of one transaction before its rows are refused [5], 200 ms × attempt apart. */
const MAX_ATTEMPTS = 5;
const RETRY_DELAY_MS = 200;
/**
 * Longest the thread lets the main thread's waiting statements go first, before each transaction
 * [50 ms]. They retry every 10 ms at most (sqlite-client.ts), so they normally take the lock well
 * within it; the bound keeps archiving going whatever the main thread does.
 */
const MAX_YIELD_MS = 50;

/**
 * A row is written when its owner is an account and the owner's XEP-0313 §7 preferences keep it:
 * a JID in `never` is not archived, one in `always` is; otherwise the default mode decides, where
 * `roster` means the peer is in the owner's roster. No preferences: always. The knex stores check
 * the same in MessageArchive (sm/archive.ts); the archive tests run both.
 */
const INSERT = 'INSERT INTO archive_messages (user, stanza_id, with_jid, with_resource, direction, created_at, stanza) SELECT @user, @stanzaId, @withJid, @withResource, @direction, @createdAt, @stanza';
const INSERT_CHECKED = `${INSERT}
  WHERE EXISTS (SELECT 1 FROM users WHERE jid = @user)
    AND COALESCE((SELECT CASE
      WHEN EXISTS (SELECT 1 FROM json_each(p.never_jids) WHERE value = @withJid) THEN 0
      WHEN EXISTS (SELECT 1 FROM json_each(p.always_jids) WHERE value = @withJid) THEN 1
      WHEN p.default_mode = 'always' THEN 1
      WHEN p.default_mode = 'never' THEN 0
      ELSE EXISTS (SELECT 1 FROM roster_items r WHERE r.user = @user AND r.contact = @withJid)
    END FROM archive_prefs p WHERE p.user = @user), 1)`;

/**
 * The thread's code. It is evaluated rather than loaded from a file so that it runs the same from
 * the compiled server and from the TypeScript sources the tests load; the driver's path comes
 * from the main thread's resolution of better-sqlite3.
 *
 * It stages the chunks it is sent and commits them in one transaction when the oldest has waited
 * COMMIT_DELAY_MS, when COMMIT_ROWS are staged, or when a chunk asks for it; a failed transaction
 * is retried with whatever was staged meanwhile, so rows are written in the order they were sent.
 * Before each transaction it lets main-thread statements that wait for the lock go first.
 */
const THREAD_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const { commitDelayMs, commitRows, maxAttempts, retryDelayMs, maxYieldMs, mainWaiting } = workerData;
let db;
let commitAll;
let staged = [];
let stagedRows = 0;
let timer;
let attempts = 0;
let retrying = false;
let closing = false;
function open() {
  db = new Database(workerData.filename);
  db.pragma('busy_timeout = ' + workerData.busyTimeoutMs);
  db.pragma('synchronous = NORMAL');
  // Each INSERT in a transaction keeps a statement journal (to undo just that statement on a
  // constraint error); in a temporary file that was 40% of the thread's time, in write() calls.
  db.pragma('temp_store = MEMORY');
  db.pragma('cache_size = -' + workerData.cacheKib);
  db.pragma('wal_autocheckpoint = ' + workerData.walAutocheckpointPages);
  const insert = db.prepare(workerData.insert);
  const insertChecked = db.prepare(workerData.insertChecked);
  commitAll = db.transaction((chunks) => chunks.map(({ rows, check }) => {
    const statement = check ? insertChecked : insert;
    let kept = 0;
    for (const [user, stanzaId, withJid, withResource, direction, at, stanza] of rows) {
      const createdAt = new Date(at).toISOString();
      kept += statement.run({ user, stanzaId, withJid, withResource, direction, createdAt, stanza }).changes;
    }
    return kept;
  }));
}
function commit() {
  clearTimeout(timer);
  timer = undefined;
  if (staged.length === 0) return;
  const chunks = staged;
  yieldToMain();
  try {
    if (!commitAll) open();
    const kept = commitAll.immediate(chunks);
    staged = [];
    stagedRows = 0;
    attempts = 0;
    parentPort.postMessage({ ids: chunks.map((c) => c.id), kept });
  } catch (err) {
    if (db && !db.inTransaction) { try { db.close(); } catch {} }
    db = undefined;
    commitAll = undefined;
    if (!closing && ++attempts < maxAttempts) {
      retrying = true;
      timer = setTimeout(() => { retrying = false; commit(); }, retryDelayMs * attempts);
      return;
    }
    staged = [];
    stagedRows = 0;
    attempts = 0;
    parentPort.postMessage({ ids: chunks.map((c) => c.id), error: String((err && err.message) || err) });
  }
}
function yieldToMain() {
  const until = Date.now() + maxYieldMs;
  for (let waiting = Atomics.load(mainWaiting, 0); waiting > 0; waiting = Atomics.load(mainWaiting, 0)) {
    const left = until - Date.now();
    if (left <= 0) return;
    Atomics.wait(mainWaiting, 0, waiting, left);
  }
}
parentPort.on('message', ({ id, rows, check, now, close }) => {
  if (close) {
    closing = true;
    commit();
    if (db) db.close();
    parentPort.close();
    return;
  }
  staged.push({ id, rows, check });
  stagedRows += rows.length;
  if (retrying) return;
  if (now || stagedRows >= commitRows) commit();
  else timer ??= setTimeout(commit, commitDelayMs);
});
`;

/** How long close() lets the thread finish its batches before ending it [10000 ms]. */
const CLOSE_TIMEOUT_MS = 10_000;

interface Pending { resolve(kept: number): void; reject(err: Error): void }

/** The thread's connection settings, as the main connection's (storage/open-storage.ts). */
export interface SqliteWriterSettings {
  /** How long a transaction waits for the write lock before SQLITE_BUSY. */
  busyTimeoutMs: number;
  /** Page cache. */
  cacheKib: number;
  /** WAL pages after which a commit checkpoints. */
  walAutocheckpointPages: number;
}

/** The writer thread ended before it committed a chunk (a crash): the chunk may be sent again. */
export class ArchiveWriterLost extends Error {}

/**
 * Writes archive rows into a SQLite file from a thread of its own. better-sqlite3 is synchronous:
 * on the main thread each batch (and each WAL checkpoint that follows a commit) held every stream
 * up, which was the bulk of a busy node's latency. Rows are sent to the thread in small chunks as
 * they are recorded, and owners and preferences are checked there, so no turn of the event loop
 * copies or checks a whole batch. The thread has its own connection to the same file (WAL: readers
 * on the main thread see each transaction once it commits); SQLite's write lock is shared with the
 * main thread's connection through busy_timeout, as with another process.
 */
export class SqliteArchiveWriter {
  private worker?: Worker;
  private closed = false;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  constructor(
    private readonly filename: string,
    private readonly settings: SqliteWriterSettings,
  ) {}

  /**
   * Stages `rows` for the thread's next transaction (committed within COMMIT_DELAY_MS, or at once
   * with `now`); with `checkOwners`, rows whose owner is no account or whose preferences leave them
   * out are skipped. Resolves with how many were written once their transaction commits; rejects
   * with SQLite's error after MAX_ATTEMPTS, or ArchiveWriterLost.
   */
  enqueue(rows: ArchiveRow[], checkOwners: boolean, now = false): Promise<number> {
    if (this.closed) return Promise.reject(new Error('the archive writer is closed'));
    const worker = this.thread();
    const id = this.nextId++;
    // The time goes as a number: the thread formats it, which took 0.5 µs a row here (toISOString),
    // a third of what handing a row over cost the event loop.
    const values = rows.map((row) => [
      row.user, row.stanzaId, row.withJid, row.withResource ?? null, row.direction, row.at.getTime(), row.stanza,
    ]);
    return new Promise<number>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.ref(); // a write in progress keeps the process up
      worker.postMessage({ id, rows: values, check: checkOwners, now });
    });
  }

  /** Writes `rows` as they are, committed at once (with whatever was staged before them). */
  async append(rows: ArchiveRow[]): Promise<void> {
    await this.enqueue(rows, false, true);
  }

  /** Lets the thread commit what it was given and close its connection; then ends it. */
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
      workerData: {
        driver: require.resolve('better-sqlite3'), filename: this.filename, ...this.settings,
        insert: INSERT, insertChecked: INSERT_CHECKED,
        commitDelayMs: COMMIT_DELAY_MS, commitRows: COMMIT_ROWS, maxAttempts: MAX_ATTEMPTS, retryDelayMs: RETRY_DELAY_MS,
        maxYieldMs: MAX_YIELD_MS, mainWaiting: mainThreadWaiting,
      },
    });
    worker.unref();
    worker.on('message', ({ ids, kept, error }: { ids: number[]; kept?: number[]; error?: string }) => {
      ids.forEach((id, i) => {
        const waiting = this.pending.get(id);
        this.pending.delete(id);
        if (error === undefined) waiting?.resolve(kept![i]);
        else waiting?.reject(new Error(error));
      });
      if (this.pending.size === 0) worker.unref();
    });
    // A thread that fails fails what it held; the next chunk starts a new one.
    const lost = (err: Error) => {
      if (this.worker !== worker) return; // closed, or already replaced
      this.worker = undefined;
      this.failAll(new ArchiveWriterLost(err.message));
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
