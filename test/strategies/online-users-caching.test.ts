import t from 'tap';
import type { SessionEvent } from '../../strategies/clustering-strategy';
import { OnlineUsersCachingStrategy } from '../../strategies/online-users-caching';

// What the shared conformance suite cannot know: the meaning of this strategy's own figures.
t.test('online-users-caching counts the users and resources in its map', async (t) => {
  const strategy = new OnlineUsersCachingStrategy({ localNode: 'a', connectedNodes: () => ['b', 'c'] });
  let clock = 1_700_000_000_000;
  const event = (type: SessionEvent['type'], jid: string, node: string) =>
    strategy.sessionEvent({ type, entry: { jid, node, available: false, priority: 0, boundAt: (clock += 1000) } });

  event('bound', 'u1@x/r1', 'b');
  event('bound', 'u1@x/r2', 'c');
  event('bound', 'u2@x/r', 'b');
  event('bound', 'me@x/r', 'a');
  t.same(strategy.stats(), { cachedUsers: 3, cachedResources: 4 });
  event('bound', 'u1@x/r1', 'c');
  t.same(strategy.stats(), { cachedUsers: 3, cachedResources: 4 }, 'a resource that moves is counted once');
  event('unbound', 'u1@x/r1', 'b');
  t.same(strategy.stats(), { cachedUsers: 3, cachedResources: 4 }, 'a stale unbound changes nothing');
  event('unbound', 'u2@x/r', 'b');
  t.same(strategy.stats(), { cachedUsers: 2, cachedResources: 3 });
  strategy.nodeLeft('c');
  t.same(strategy.stats(), { cachedUsers: 1, cachedResources: 1 }, "a node's entries go when it leaves");
});
