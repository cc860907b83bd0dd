import type { ClusteringStrategy, ResourceEntry, SessionEvent, StrategyContext } from './clustering-strategy';

/**
 * Every node keeps a map of who is online where (bare JID -> resource -> entry), kept current by
 * session events from peers, filled from each peer's snapshot when a link comes up, and purged of
 * a node's entries when it leaves. Stanzas go only to the nodes that hold the recipient.
 * Every entry names its node, so a dead node's entries go at once (DESIGN: caches need an owner).
 */
export class OnlineUsersCachingStrategy implements ClusteringStrategy {
  readonly name = 'online-users-caching';
  readonly knowsRemoteSessions = true;
  private readonly users = new Map<string, Map<string, ResourceEntry>>();
  private resources = 0;

  constructor(private readonly ctx: StrategyContext) {}

  nodesForUser(bare: string): string[] {
    const entries = this.users.get(bare);
    if (!entries) return [];
    const nodes = new Set<string>();
    for (const entry of entries.values()) if (entry.node !== this.ctx.localNode) nodes.add(entry.node);
    return [...nodes];
  }

  nodesForResource(full: string): string[] {
    const entry = this.users.get(bareOf(full))?.get(full);
    return entry && entry.node !== this.ctx.localNode ? [entry.node] : [];
  }

  remoteResources(bare: string): ResourceEntry[] {
    const entries = this.users.get(bare);
    return entries ? [...entries.values()].filter((e) => e.node !== this.ctx.localNode) : [];
  }

  sessionEvent(event: SessionEvent): void {
    const { entry } = event;
    const bare = bareOf(entry.jid);
    if (event.type === 'unbound') {
      const entries = this.users.get(bare);
      // Only the session that is gone: a newer one with the same JID elsewhere stays.
      if (entries?.get(entry.jid)?.node === entry.node) {
        entries.delete(entry.jid);
        this.resources--;
        if (entries.size === 0) this.users.delete(bare);
      }
      return;
    }
    let entries = this.users.get(bare);
    if (!entries) {
      entries = new Map();
      this.users.set(bare, entries);
    }
    const existing = entries.get(entry.jid);
    if (!existing) this.resources++;
    // A presence update for a session we no longer list (it moved) is not resurrected.
    if (event.type === 'presence' && existing && existing.node !== entry.node) return;
    entries.set(entry.jid, { ...entry });
  }

  nodeJoined(): void {}

  nodeLeft(node: string): void {
    for (const [bare, entries] of this.users) {
      for (const [jid, entry] of entries) {
        if (entry.node !== node) continue;
        entries.delete(jid);
        this.resources--;
      }
      if (entries.size === 0) this.users.delete(bare);
    }
  }

  snapshot(): ResourceEntry[] {
    const local: ResourceEntry[] = [];
    for (const entries of this.users.values()) {
      for (const entry of entries.values()) if (entry.node === this.ctx.localNode) local.push({ ...entry });
    }
    return local;
  }

  stats(): Record<string, number> {
    return { cachedUsers: this.users.size, cachedResources: this.resources };
  }
}

function bareOf(jid: string): string {
  const slash = jid.indexOf('/');
  return slash === -1 ? jid : jid.slice(0, slash);
}
