import type { RosterItem, RosterStore } from '../storage/types';
import type { SessionManager } from './session-manager';

/**
 * A cached roster is read from storage again after this long [10 min]. Every change made through
 * a node reaches the cache at once; this only bounds how long a change it was never told of stays
 * unseen: a write by another process (xmppctl deluser), or by a peer that wrote before it learnt
 * of the session here.
 */
export const CACHED_ROSTER_MAX_AGE_MS = 10 * 60_000;

/** A change just stored: an item written (insert or replace) or a contact removed. */
export type RosterChange = { set: RosterItem } | { remove: string };

interface Entry {
  /** Items by contact JID, once loaded. */
  items?: Map<string, RosterItem>;
  /** The load in flight: readers arriving meanwhile share it. */
  loading?: Promise<ReadonlyMap<string, RosterItem>>;
  /** When the load started: the age of what it read. */
  readAt: number;
  /** Bumped by each write applied to `items`: of two overlapping writes, the later-finishing cannot patch. */
  writes: number;
}

/**
 * The rosters of users with a session on this node, in memory, so that presence broadcasts and
 * probes read no database (DESIGN: no per-stanza query on the hot path). An entry lives from the
 * first read while the user has a session here until the last of them ends. Users without a
 * session here are not cached at all: a peer's roster push reaches only the nodes that hold the
 * user's sessions, so nothing would tell this node of a change made elsewhere.
 *
 * A write patches the cached copy when nothing else touched it meanwhile; otherwise the copy is
 * dropped and read again on next use, so a load that a write or forget() overtook is never used.
 * Cached items are frozen: callers copy before changing one.
 */
export class RosterCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly store: RosterStore,
    private readonly sessions: SessionManager,
  ) {
    // Checked once the session is forgotten: its own unavailable broadcast reads the roster while
    // it is still bound (end listeners run first, in any order) and must find it here, yet leave
    // no entry behind for a user without a session.
    sessions.onEnd((session) => {
      queueMicrotask(() => {
        if (!this.sessions.hasSessions(session.bare)) this.entries.delete(session.bare);
      });
    });
  }

  /** The items of `user`, loaded once; undefined when the user has no session here (read storage instead). */
  items(user: string): Promise<ReadonlyMap<string, RosterItem>> | undefined {
    if (!this.sessions.hasSessions(user)) return undefined;
    const entry = this.entries.get(user);
    if (entry?.items && Date.now() - entry.readAt < CACHED_ROSTER_MAX_AGE_MS) return Promise.resolve(entry.items);
    if (entry?.loading) return entry.loading;
    return this.load(user);
  }

  /**
   * Runs `write` (a storage write to `user`'s roster), then applies `change` to the cached copy if
   * no other write or reload overlapped it. Otherwise the copy is dropped: which of two overlapping
   * writes was stored last is not known here.
   */
  async write<T>(user: string, write: () => Promise<T>, change: RosterChange): Promise<T> {
    const before = this.entries.get(user);
    const writes = before?.writes;
    let result: T;
    try {
      result = await write();
    } catch (err) {
      this.forget(user); // whether it was stored is unknown
      throw err;
    }
    const entry = this.entries.get(user);
    if (entry?.items && entry === before && entry.writes === writes) {
      entry.writes++;
      if ('set' in change) entry.items.set(change.set.jid, storedItem(change.set));
      else entry.items.delete(change.remove);
    } else {
      this.forget(user);
    }
    return result;
  }

  /** Drops the cached copy (and disowns a load in flight): the next read goes to storage. */
  forget(user: string): void {
    this.entries.delete(user);
  }

  private load(user: string): Promise<ReadonlyMap<string, RosterItem>> {
    const entry: Entry = { readAt: Date.now(), writes: 0 };
    this.entries.set(user, entry);
    entry.loading = this.store.getItems(user).then(
      (list) => {
        // Installed even when a write or forget() overtook the load: the entry is then no longer in `entries`.
        entry.items = new Map(list.map((item) => [item.jid, storedItem(item)]));
        entry.loading = undefined;
        return entry.items;
      },
      (err: unknown) => {
        if (this.entries.get(user) === entry) this.entries.delete(user); // the next reader tries again
        throw err;
      },
    );
    return entry.loading;
  }
}

/** `item` as storage gives it back (optional flags only when true), frozen. */
function storedItem(item: RosterItem): RosterItem {
  const stored: RosterItem = { jid: item.jid, subscription: item.subscription, groups: Object.freeze([...item.groups]) as string[] };
  if (item.name !== undefined) stored.name = item.name;
  if (item.ask === true) stored.ask = true;
  if (item.approved === true) stored.approved = true;
  return Object.freeze(stored);
}
