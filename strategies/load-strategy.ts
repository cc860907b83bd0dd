import path from 'node:path';
import { BroadcastStrategy } from './broadcast';
import type { ClusteringStrategy, StrategyContext } from './clustering-strategy';
import { OnlineUsersCachingStrategy } from './online-users-caching';

/**
 * Builds the strategy named by --sm-cluster-strategy-class: 'broadcast',
 * 'online-users-caching' (the config loader maps Tigase's class names to these), or the
 * absolute path of a JS module whose default export is a strategy class or factory.
 */
export function loadStrategy(name: string, ctx: StrategyContext): ClusteringStrategy {
  if (name === 'broadcast') return new BroadcastStrategy(ctx);
  if (name === 'online-users-caching') return new OnlineUsersCachingStrategy(ctx);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const loaded = require(path.resolve(name));
  const exported = loaded?.default ?? loaded;
  if (typeof exported !== 'function') {
    throw new Error(`${name}: the default export must be a ClusteringStrategy class or factory`);
  }
  let strategy: ClusteringStrategy;
  try {
    strategy = new exported(ctx);
  } catch (err) {
    if (!(err instanceof TypeError)) throw err;
    strategy = exported(ctx); // a factory function rather than a class
  }
  const required: (keyof ClusteringStrategy)[] = ['nodesForUser', 'nodesForResource', 'remoteResources', 'sessionEvent', 'nodeJoined', 'nodeLeft', 'snapshot', 'stats'];
  const missing = required.filter((method) => typeof strategy?.[method] !== 'function');
  if (missing.length > 0) throw new Error(`${name}: the strategy lacks ${missing.join(', ')}`);
  return strategy;
}
