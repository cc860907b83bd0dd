import path from 'node:path';
import t from 'tap';
import type { ClusteringStrategy, ResourceEntry, StrategyContext } from '../../strategies/clustering-strategy';
import { loadStrategy } from '../../strategies/load-strategy';

const CUSTOM = path.join(__dirname, '..', '..', 'strategies', 'examples', 'least-known-nodes.js');
const STRATEGIES = ['broadcast', 'online-users-caching', CUSTOM];

function context(localNode: string, peers: string[]): StrategyContext & { peers: string[] } {
  return { localNode, peers, connectedNodes() { return [...this.peers].sort(); } };
}

function entry(jid: string, node: string, extra: Partial<ResourceEntry> = {}): ResourceEntry {
  return { jid, node, available: true, priority: 0, boundAt: Date.now(), ...extra };
}

/** The one promise every strategy keeps: a stanza for a user reaches every node that holds one of its sessions. */
function coversTruth(t: Tap.Test, strategy: ClusteringStrategy, truth: Map<string, string[]>, local: string) {
  for (const [bare, nodes] of truth) {
    const listed = strategy.nodesForUser(bare);
    for (const node of nodes) if (node !== local) t.ok(listed.includes(node), `${bare} on ${node} is reachable`);
    t.notOk(listed.includes(local), 'never lists this node itself');
  }
}

for (const name of STRATEGIES) {
  t.test(`conformance: ${path.basename(name)}`, async (t) => {
    const ctx = context('node-a', ['node-b', 'node-c']);
    const strategy = loadStrategy(name, ctx);

    t.test('reaches users on any node, with many resources on different nodes', async (t) => {
      strategy.nodeJoined('node-b');
      strategy.nodeJoined('node-c');
      strategy.sessionEvent({ type: 'bound', entry: entry('alice@x/1', 'node-b') });
      strategy.sessionEvent({ type: 'bound', entry: entry('alice@x/2', 'node-c') });
      strategy.sessionEvent({ type: 'bound', entry: entry('alice@x/3', 'node-a') });
      strategy.sessionEvent({ type: 'bound', entry: entry('bob@x/1', 'node-c') });
      coversTruth(t, strategy, new Map([['alice@x', ['node-b', 'node-c', 'node-a']], ['bob@x', ['node-c']]]), 'node-a');
      t.ok(strategy.nodesForResource('alice@x/1').includes('node-b'));
      t.notOk(strategy.nodesForResource('alice@x/3').includes('node-a'));
    });

    t.test('a node that leaves is no longer a destination', async (t) => {
      ctx.peers = ['node-c'];
      strategy.nodeLeft('node-b');
      t.notOk(strategy.nodesForUser('alice@x').includes('node-b'));
      t.ok(strategy.nodesForUser('alice@x').includes('node-c'));
      t.notOk(strategy.nodesForResource('alice@x/1').includes('node-b'));
    });

    t.test('unbound sessions of another node do not remove a newer one', async (t) => {
      strategy.sessionEvent({ type: 'bound', entry: entry('carol@x/r', 'node-c') });
      strategy.sessionEvent({ type: 'unbound', entry: entry('carol@x/r', 'node-b') });
      t.ok(strategy.nodesForUser('carol@x').includes('node-c'));
    });

    t.test('snapshot holds only this node\'s sessions', async (t) => {
      for (const item of strategy.snapshot()) t.equal(item.node, 'node-a');
      t.type(strategy.stats(), 'object');
    });
  });
}

t.test('online-users-caching keeps an exact map', async (t) => {
  const ctx = context('a', ['b', 'c']);
  const strategy = loadStrategy('online-users-caching', ctx);
  t.equal(strategy.knowsRemoteSessions, true);

  t.test('sync on join: a peer snapshot fills the map', async (t) => {
    for (const item of [entry('u1@x/r1', 'b'), entry('u1@x/r2', 'c'), entry('u2@x/r', 'b', { available: false })]) {
      strategy.sessionEvent({ type: 'bound', entry: item });
    }
    t.same(strategy.nodesForUser('u1@x').sort(), ['b', 'c']);
    t.same(strategy.nodesForUser('nobody@x'), [], 'a user online nowhere has no nodes');
    t.same(strategy.remoteResources('u1@x').map((e) => e.jid).sort(), ['u1@x/r1', 'u1@x/r2']);
    t.match(strategy.stats(), { cachedUsers: 2, cachedResources: 3 });
  });

  t.test('presence changes update priority and availability', async (t) => {
    strategy.sessionEvent({ type: 'presence', entry: entry('u2@x/r', 'b', { available: true, priority: 5 }) });
    t.match(strategy.remoteResources('u2@x'), [{ available: true, priority: 5 }]);
  });

  t.test('purge on leave drops exactly the node\'s entries', async (t) => {
    strategy.nodeLeft('b');
    t.same(strategy.nodesForUser('u1@x'), ['c']);
    t.same(strategy.nodesForUser('u2@x'), []);
    t.match(strategy.stats(), { cachedUsers: 1, cachedResources: 1 });
  });

  t.test('local sessions are in the snapshot, not among the destinations', async (t) => {
    strategy.sessionEvent({ type: 'bound', entry: entry('me@x/here', 'a') });
    t.same(strategy.nodesForUser('me@x'), []);
    t.same(strategy.snapshot().map((e) => e.jid), ['me@x/here']);
    strategy.sessionEvent({ type: 'unbound', entry: entry('me@x/here', 'a') });
    t.same(strategy.snapshot(), []);
  });
});

t.test('a strategy module without the interface is refused with a clear message', async (t) => {
  t.throws(() => loadStrategy(path.join(__dirname, '..', '..', 'package.json'), context('a', [])), /default export|lacks/);
});
