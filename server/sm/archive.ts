import { randomFillSync } from 'node:crypto';
import type { Element } from 'ltx';
import type { JID } from '../jid';
import type { Logger } from '../log';
import { ArchiveWriterLost } from '../storage/sqlite-archive-writer';
import type { ArchivePrefs, ArchiveRow, Storage } from '../storage/types';
import { NS } from '../xml/ns';
import { serialize } from '../xml/serialize';
import type { RosterService } from './roster-service';
import type { SessionManager } from './session-manager';
import { UserCache } from './user-cache';

/** MySQL and PostgreSQL: rows written in one transaction [1000], in INSERTs of 200. */
const BATCH_ROWS = 1000;
/**
 * MySQL and PostgreSQL: longest a row waits for its batch [100 ms], as SQLite's writer thread
 * (storage/sqlite-archive-writer.ts, which says why). The batches go through the pool, so their
 * size delays no stream. A MAM query writes what its node has gathered first.
 */
const BATCH_DELAY_MS = 100;
/**
 * Stores with a writer thread (SQLite, ArchiveStore.enqueue) get rows in chunks of at most [100],
 * each handed over once its first row has waited [10 ms]: copying a chunk to the thread takes a few
 * tens of µs, where a whole batch held the event loop (and every stream) for milliseconds.
 */
const CHUNK_ROWS = 100;
const CHUNK_DELAY_MS = 10;
/**
 * Rows of one archive waiting for the database before new ones are counted as dropped [50,000, or
 * twice --mam-backlog-limit when that is more]. Client intake is held long before (ArchiveBacklog);
 * this bounds memory where it cannot be: what other nodes and servers send is not held.
 */
const QUEUE_LIMIT = 50_000;
/** Attempts of one batch before its rows are counted as dropped [5]. */
const MAX_ATTEMPTS = 5;
/** XEP-0313 §7: what a user who never set preferences gets. */
export const DEFAULT_PREFS: ArchivePrefs = { default: 'always', always: [], never: [] };

/**
 * The rows a node accepted for its archives (users' and rooms': main.ts gives each the node's one) and
 * the database has not taken yet. Past `limit` (--mam-backlog-limit) it is `held`: the node stops
 * reading from client connections (server/main.ts), so senders wait in TCP instead of their
 * archive rows being dropped, until half of the limit is left. Rows the database refuses after
 * retries still end as dropped (and counted), which shrinks the backlog too: an archive database
 * that is down slows the clients, it does not stop them.
 */
export class ArchiveBacklog {
  /** Rows accepted and not yet written, skipped or dropped. */
  rows = 0;
  held = false;
  /** Times the backlog went past the limit. */
  holds = 0;
  /** Rows past which intake is held [20000, --mam-backlog-limit]; setLimit changes it. */
  limit = 20_000;
  private readonly listeners = new Set<(held: boolean) => void>();

  /** `listener(held)` whenever intake is held or released. */
  onChange(listener: (held: boolean) => void): void {
    this.listeners.add(listener);
  }

  /** A new limit (at start, and on a reload): holds or releases at once if the backlog is past it or within half of it. */
  setLimit(limit: number): void {
    this.limit = limit;
    this.accepted(0);
    this.settled(0);
  }

  accepted(rows: number): void {
    this.rows += rows;
    if (!this.held && this.rows >= this.limit) {
      this.held = true;
      this.holds++;
      for (const listener of this.listeners) listener(true);
    }
  }

  settled(rows: number): void {
    this.rows -= rows;
    if (this.held && this.rows <= this.limit / 2) {
      this.held = false;
      for (const listener of this.listeners) listener(false);
    }
  }
}

/** Random bytes drawn 4 KiB at a time for stanza ids (one getrandom call per 256 ids). */
const entropy = Buffer.alloc(4096);
let entropyUsed = entropy.length;

/**
 * An XEP-0359 stanza id: a UUID version 7 (RFC 9562), the time in milliseconds followed by 74
 * random bits. Unique and unguessable like a random UUID, but rows arrive in id order, so the
 * archive's (stanza_id, user) index grows at its end, one page for a whole batch: with random
 * UUIDs, every batch of archive rows dirtied a page per row once the index outgrew the cache.
 */
export function timeOrderedId(now = Date.now()): string {
  if (entropyUsed + 10 > entropy.length) {
    randomFillSync(entropy);
    entropyUsed = 0;
  }
  const b = Buffer.allocUnsafe(16);
  b.writeUIntBE(now, 0, 6);
  entropy.copy(b, 6, entropyUsed, entropyUsed + 10);
  entropyUsed += 10;
  b[6] = (b[6] & 0x0f) | 0x70; // version 7
  b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
  const hex = b.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * XEP-0313 §5.1.1 (and XEP-0334 hints): chat and normal messages (groupchat in a room's archive)
 * with a body (or an end-to-end encrypted payload, or a <store/> hint) are archived; <no-store/> and
 * <no-permanent-store/> are not.
 */
export function archivable(stanza: Element, archive: 'user' | 'room' = 'user'): boolean {
  const type = (stanza.attrs.type as string | undefined) ?? 'normal';
  // A user's archive keeps one-to-one messages; a room's, what is said in the room.
  if (archive === 'room' ? type !== 'groupchat' : type !== 'chat' && type !== 'normal') return false;
  if (stanza.getChild('no-store', NS.HINTS) || stanza.getChild('no-permanent-store', NS.HINTS)) return false;
  return !!stanza.getChild('body') || !!stanza.getChild('store', NS.HINTS) || !!stanza.getChild('encrypted', NS.OMEMO);
}

/**
 * The users' message archives: `record` gives a message its XEP-0359 stanza id at once (no I/O on
 * the delivery path) and queues the row; rows go to the database in batches, after the owner's
 * preferences (XEP-0313 §7) and existence are checked (here, or by the store's writer thread).
 * Each message is recorded by the one node that routes it, so each archive holds it once, wherever
 * the parties are connected.
 */
export class MessageArchive {
  private queue: ArchiveRow[] = [];
  private timer?: NodeJS.Timeout;
  private writing?: Promise<void>;
  /** Rows handed to the store's writer thread and not committed yet, and the hand-overs in flight. */
  private handedOver = 0;
  private readonly handOvers = new Set<Promise<void>>();
  readonly counters = { archived: 0, dropped: 0, skipped: 0 };

  /** The owners' preferences (XEP-0313 §7), cached per user: user archives only. */
  private readonly prefs?: UserCache<ArchivePrefs>;

  constructor(
    private readonly storage: Storage,
    private readonly logger: Logger,
    /** The node's count of rows owed to the database, shared by all its archives. */
    private readonly backlog: ArchiveBacklog,
    /** 'accounts': owners are users (checked to exist, with preferences); 'rooms': MUC rooms. */
    private readonly owners: 'accounts' | 'rooms' = 'accounts',
    /** For 'accounts': whose preferences stay cached for as long as they have a session here. */
    sessions?: SessionManager,
    /**
     * For 'accounts' with 'roster' preferences: the roster as the node has it (in memory for users
     * with a session here, RosterService), instead of a query per message.
     */
    private readonly roster: Pick<RosterService, 'item'> = { item: (user, contact) => storage.roster.getItem(user, contact) },
  ) {
    if (owners === 'accounts' && sessions) {
      this.prefs = new UserCache(sessions, async (user) => (await storage.archive.prefs(user)) ?? DEFAULT_PREFS);
    }
  }

  /**
   * Queues `stanza` for `owner`'s archive (direction as the owner sees it); returns its stanza id,
   * or undefined when the queue is full and the row is dropped: a message gets an id only if the
   * archive is to hold it, since a client that pages from an id no query knows (`after-id`) gets
   * item-not-found and loses its place.
   */
  record(owner: string, direction: 'in' | 'out', peer: JID, stanza: Element): string | undefined {
    return this.queueRow(owner, direction, peer, peer.bareString(), stanza);
  }

  /** record(), with the peer's bare JID already known. */
  private queueRow(owner: string, direction: 'in' | 'out', peer: JID, withJid: string, stanza: Element): string | undefined {
    if (this.queue.length + this.handedOver >= Math.max(QUEUE_LIMIT, 2 * this.backlog.limit)) {
      this.counters.dropped++;
      return undefined;
    }
    const now = Date.now();
    const stanzaId = timeOrderedId(now);
    this.queue.push({
      user: owner, stanzaId, withJid, withResource: peer.resource || undefined,
      direction, at: new Date(now), stanza: serialize(stanza),
    });
    this.backlog.accepted(1);
    if (this.storage.archive.enqueue) {
      if (this.queue.length >= CHUNK_ROWS) this.handOver(false);
      else this.timer ??= setTimeout(() => this.handOver(false), CHUNK_DELAY_MS);
    } else if (this.queue.length >= BATCH_ROWS) this.flushSoon(0);
    else this.flushSoon(BATCH_DELAY_MS);
    return stanzaId;
  }

  /**
   * record() if `owner`'s preferences keep a message with `peer` (XEP-0313 §7); undefined, and the
   * message counted as skipped, if they leave it out. The writer checks the preferences again when
   * it writes (they may change meanwhile); checking them here as well keeps a message the archive
   * leaves out from getting an id. With the preferences cached (the usual case) it returns at once,
   * without a promise.
   */
  recordKept(owner: string, direction: 'in' | 'out', peer: JID, stanza: Element): string | undefined | Promise<string | undefined> {
    if (!this.prefs) return this.record(owner, direction, peer, stanza);
    const withJid = peer.bareString();
    const cached = this.prefs.peek(owner);
    const kept = cached ? this.keeps(owner, withJid, cached) : this.prefs.get(owner).then((prefs) => this.keeps(owner, withJid, prefs));
    if (kept === true) return this.queueRow(owner, direction, peer, withJid, stanza);
    if (kept === false) return this.skip();
    return kept.then((yes) => (yes ? this.queueRow(owner, direction, peer, withJid, stanza) : this.skip()));
  }

  /** `owner` set new preferences (here, or on another node that said so): the cached ones go. */
  prefsChanged(owner: string): void {
    this.prefs?.forget(owner);
  }

  private skip(): undefined {
    this.counters.skipped++;
    return undefined;
  }

  /** Resolves once everything recorded so far is written (or given up on). */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.storage.archive.enqueue) {
      if (this.queue.length > 0 || this.handOvers.size > 0) this.handOver(true);
      while (this.handOvers.size > 0) await Promise.all([...this.handOvers]);
      return;
    }
    while (this.writing || this.queue.length > 0) {
      if (this.writing) await this.writing;
      else this.startWriting();
    }
  }

  /** Hands the queue to the store's writer thread; `now`: committed at once, with what the thread holds. */
  private handOver(now: boolean): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const rows = this.queue;
    this.queue = [];
    this.send(rows, now, 1);
  }

  /** One chunk to the writer thread; rows a thread lost by ending go to its successor, in order. */
  private send(rows: ArchiveRow[], now: boolean, attempt: number): void {
    this.handedOver += rows.length;
    const done = this.storage.archive.enqueue!(rows, this.owners === 'accounts', now).then(
      (kept) => {
        this.counters.archived += kept;
        this.counters.skipped += rows.length - kept;
        this.backlog.settled(rows.length);
      },
      (err) => {
        if (err instanceof ArchiveWriterLost && attempt < MAX_ATTEMPTS) return this.send(rows, now, attempt + 1);
        this.counters.dropped += rows.length;
        this.backlog.settled(rows.length);
        this.logger.error('archive rows dropped: the database did not take them', { rows: rows.length, err: String(err) });
      },
    ).finally(() => {
      this.handedOver -= rows.length;
      this.handOvers.delete(done);
    });
    this.handOvers.add(done);
  }

  private flushSoon(delay: number): void {
    if (this.writing) return; // the running write takes the next batch when it ends
    if (delay === 0) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.startWriting();
      return;
    }
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.startWriting();
    }, delay);
  }

  private startWriting(): void {
    if (this.writing || this.queue.length === 0) return;
    const batch = this.queue.splice(0, BATCH_ROWS);
    this.writing = this.write(batch).finally(() => {
      this.writing = undefined;
      if (this.queue.length > 0) this.flushSoon(this.queue.length >= BATCH_ROWS ? 0 : BATCH_DELAY_MS);
    });
  }

  private async write(batch: ArchiveRow[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        const keep = await this.wanted(batch);
        await this.storage.archive.append(keep);
        this.counters.archived += keep.length;
        this.counters.skipped += batch.length - keep.length;
        this.backlog.settled(batch.length);
        return;
      } catch (err) {
        if (attempt >= MAX_ATTEMPTS) {
          this.counters.dropped += batch.length;
          this.backlog.settled(batch.length);
          this.logger.error('archive rows dropped: the database did not take them', { rows: batch.length, err: String(err) });
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 200 * attempt).unref());
      }
    }
  }

  /** The rows whose owner exists and whose preferences keep them. */
  private async wanted(batch: ArchiveRow[]): Promise<ArchiveRow[]> {
    if (this.owners === 'rooms') return batch;
    const owners = [...new Set(batch.map((row) => row.user))];
    const existing = new Set((await this.storage.knex('users').whereIn('jid', owners).select('jid')).map((r: { jid: string }) => r.jid));
    const prefs = await this.storage.archive.prefsOf(owners.filter((o) => existing.has(o)));
    const keep: ArchiveRow[] = [];
    for (const row of batch) {
      if (!existing.has(row.user)) continue;
      if (await this.keeps(row.user, row.withJid, prefs.get(row.user) ?? DEFAULT_PREFS)) keep.push(row);
    }
    return keep;
  }

  /** XEP-0313 §7: whether `owner`'s preferences keep a message with `peer` (a bare JID); 'roster' asks the roster. */
  private keeps(owner: string, peer: string, prefs: ArchivePrefs): boolean | Promise<boolean> {
    if (prefs.never.includes(peer)) return false;
    if (prefs.always.includes(peer)) return true;
    if (prefs.default === 'always') return true;
    if (prefs.default === 'never') return false;
    return this.roster.item(owner, peer).then((item) => item !== undefined);
  }
}
