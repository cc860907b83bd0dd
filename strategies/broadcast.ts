import type { ClusteringStrategy, ResourceEntry, StrategyContext } from './clustering-strategy';

/**
 * Keeps no knowledge of remote users: a stanza for a user who is not here goes to every
 * connected node, which delivers to whatever it has. Simple and always right; suits 3–4 nodes.
 */
export class BroadcastStrategy implements ClusteringStrategy {
  readonly name = 'broadcast';
  readonly knowsRemoteSessions = false;

  constructor(private readonly ctx: StrategyContext) {}

  nodesForUser(): string[] {
    return this.ctx.connectedNodes();
  }

  nodesForResource(): string[] {
    return this.ctx.connectedNodes();
  }

  remoteResources(): ResourceEntry[] {
    return [];
  }

  sessionEvent(): void {}

  nodeJoined(): void {}

  nodeLeft(): void {}

  snapshot(): ResourceEntry[] {
    return [];
  }

  stats(): Record<string, number> {
    return {};
  }
}
