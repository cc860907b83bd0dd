import type { SessionManager } from './session-manager';

/** Values of users without a session here kept at most this long [60 s]: a missed change heals by then. */
const REMOTE_TTL_MS = 60_000;
/** Values cached for users without a session here, at most [10000]; the cache starts over when full. */
const REMOTE_LIMIT = 10_000;

/**
 * Something stored per user that stanzas are checked against on their way (a block list, archive
 * preferences), read from storage once and then kept. A user with sessions here keeps the value
 * until a change (made here, or announced by the node that made it: the owner calls forget()).
 * Other users' values are needed for stanzas to them (e.g. to users on other nodes), so they are
 * cached too, briefly and within a bound: no database query per stanza.
 */
export class UserCache<T> {
  private readonly cache = new Map<string, { value: T; until: number }>();
  /** Reads in progress: a stanza that needs a value already being read waits for that read. */
  private readonly loading = new Map<string, { generation: number; value: Promise<T> }>();
  private remoteEntries = 0;
  /** Bumped by forget(): a read that started before a change must not cache what it read. */
  private generation = 0;

  constructor(
    private readonly sessions: SessionManager,
    private readonly load: (user: string) => Promise<T>,
  ) {
    sessions.onEnd((session) => {
      if (this.sessions.resources(session.bare).every((s) => s === session)) this.cache.delete(session.bare);
    });
  }

  /** The cached value when it is still good; undefined when get() has to read it. */
  peek(user: string): T | undefined {
    return this.fresh(user)?.value;
  }

  /**
   * The value, read from storage when it is not cached. Readers that come while it is read share
   * that one read, and get it in the order they came: stanzas for one user that all wait for it go
   * on in their order, and storage is asked once.
   */
  get(user: string): Promise<T> {
    const cached = this.fresh(user);
    if (cached) return Promise.resolve(cached.value);
    const reading = this.loading.get(user);
    // A read that started before a change (forget) is not shared: it may hold what came before.
    if (reading && reading.generation === this.generation) return reading.value;
    const generation = this.generation;
    const value = this.load(user).then((loaded) => {
      if (generation === this.generation) this.keep(user, loaded);
      return loaded;
    });
    this.loading.set(user, { generation, value });
    const done = () => {
      if (this.loading.get(user)?.value === value) this.loading.delete(user);
    };
    value.then(done, done);
    return value;
  }

  forget(user: string): void {
    this.generation++;
    this.cache.delete(user);
  }

  /** The entry of `user` while it is good: the user has a session here, or it is younger than REMOTE_TTL_MS. */
  private fresh(user: string): { value: T } | undefined {
    const cached = this.cache.get(user);
    return cached && (cached.until > Date.now() || this.sessions.hasSessions(user)) ? cached : undefined;
  }

  private keep(user: string, value: T): void {
    if (!this.sessions.hasSessions(user) && ++this.remoteEntries > REMOTE_LIMIT) {
      this.cache.clear();
      this.remoteEntries = 1;
    }
    this.cache.set(user, { value, until: Date.now() + REMOTE_TTL_MS });
  }
}
