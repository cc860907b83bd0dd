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
    const cached = this.cache.get(user);
    if (cached && (cached.until > Date.now() || this.sessions.hasSessions(user))) return cached.value;
    return undefined;
  }

  async get(user: string): Promise<T> {
    const cached = this.cache.get(user);
    const local = this.sessions.hasSessions(user);
    if (cached && (local || cached.until > Date.now())) return cached.value;
    const generation = this.generation;
    const value = await this.load(user);
    if (generation !== this.generation) return value;
    if (!local && ++this.remoteEntries > REMOTE_LIMIT) {
      this.cache.clear();
      this.remoteEntries = 1;
    }
    this.cache.set(user, { value, until: Date.now() + REMOTE_TTL_MS });
    return value;
  }

  forget(user: string): void {
    this.generation++;
    this.cache.delete(user);
  }
}
