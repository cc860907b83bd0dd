import type { ClusteringStrategy } from '../clustering-strategy';
import { expectRouting, type TapTest } from './routing-checks';
import { createStrategy, SimulatedCluster, TestContext, type StrategyUnderTest } from './simulated-cluster';

export type { StrategyUnderTest } from './simulated-cluster';

const A = 'node-a';
const B = 'node-b';
const C = 'node-c';

type Scenario = (t: TapTest, cluster: SimulatedCluster) => void;

/**
 * The conformance suite every ClusteringStrategy passes, registered as tap subtests of `t`
 * (aedes' abstract.js is the model). `subject` is 'broadcast', 'online-users-caching', the
 * absolute path of a strategy module, or a factory `(ctx) => strategy`:
 *
 *   const t = require('tap');
 *   const { strategyConformance } = require('/path/to/xmpp-cluster-server/dist/strategies/conformance');
 *   strategyConformance(t, require.resolve('./my-strategy.js'));
 *
 * Each scenario runs a fresh strategy on node-a beside simulated peers node-b and node-c, and
 * after each step checks every promise of the interface against the truth.
 */
export function strategyConformance(t: TapTest, subject: StrategyUnderTest, label = describe(subject)): Promise<unknown> {
  return t.test(`ClusteringStrategy conformance: ${label}`, async (t) => {
    let probe: ClusteringStrategy;
    try {
      probe = createStrategy(subject, new TestContext(A));
    } catch (err) {
      t.fail(`the strategy loads: ${(err as Error)?.message ?? err}`);
      return;
    }
    t.ok(typeof probe.name === 'string' && probe.name.length > 0, 'it has a name');
    t.type(probe.knowsRemoteSessions, 'boolean', 'knowsRemoteSessions is a boolean');
    for (const [name, scenario] of Object.entries(SCENARIOS)) {
      t.test(name, async (t) => scenario(t, new SimulatedCluster(subject)));
    }
  });
}

function describe(subject: StrategyUnderTest): string {
  return typeof subject === 'string' ? subject : subject.name || 'a strategy factory';
}

const SCENARIOS: Record<string, Scenario> = {
  'a stanza for a user reaches every peer that holds one of its sessions': (t, cluster) => {
    const a = cluster.addNode(A, [B, C]);
    expectRouting(t, cluster, a, 'with no sessions anywhere');
    cluster.bind('alice@x.example/phone', B);
    cluster.bind('alice@x.example/laptop', C);
    cluster.bind('alice@x.example/desk', A);
    cluster.bind('bob@x.example/1', C);
    cluster.bind('carol@x.example/1', A);
    expectRouting(t, cluster, a, 'bound, no presence yet');
    cluster.presence('alice@x.example/phone', B, true, 5);
    cluster.presence('bob@x.example/1', C, true);
    cluster.presence('carol@x.example/1', A, true, 1);
    expectRouting(t, cluster, a, 'some resources available, others not yet');
  },

  'presence changes keep every session reachable and remoteResources current': (t, cluster) => {
    const a = cluster.addNode(A, [B, C]);
    cluster.bind('alice@x.example/phone', B);
    cluster.bind('alice@x.example/laptop', C);
    cluster.bind('alice@x.example/desk', A);
    for (const [jid, node] of [['phone', B], ['laptop', C], ['desk', A]]) cluster.presence(`alice@x.example/${jid}`, node, true, 1);
    expectRouting(t, cluster, a, 'all available');
    cluster.presence('alice@x.example/phone', B, false);
    expectRouting(t, cluster, a, 'the resource on node-b unavailable again');
    cluster.presence('alice@x.example/laptop', C, true, -1);
    expectRouting(t, cluster, a, 'the resource on node-c at a negative priority');
    cluster.presence('alice@x.example/desk', A, false);
    expectRouting(t, cluster, a, "this node's resource unavailable");
  },

  'a late presence from the node that lost a resource does not move it back': (t, cluster) => {
    const a = cluster.addNode(A, [B, C]);
    cluster.bind('dave@x.example/r', B);
    cluster.presence('dave@x.example/r', B, true);
    cluster.bind('dave@x.example/r', C); // the same full JID again, on node-c: it replaces node-b's
    cluster.presence('dave@x.example/r', B, true, 9); // sent by node-b before it heard
    expectRouting(t, cluster, a, 'after a stale presence from node-b');
    cluster.unbind('dave@x.example/r', B);
    expectRouting(t, cluster, a, 'after node-b ends its replaced session');
  },

  "a stale 'unbound' from another node does not remove a newer binding": (t, cluster) => {
    const a = cluster.addNode(A, [B, C]);
    cluster.bind('erin@x.example/r', B);
    cluster.bind('erin@x.example/r', C);
    cluster.unbind('erin@x.example/r', B);
    expectRouting(t, cluster, a, 'moved from node-b to node-c');
    cluster.bind('finn@x.example/r', A);
    cluster.bind('finn@x.example/r', C);
    cluster.unbind('finn@x.example/r', A);
    expectRouting(t, cluster, a, 'moved from this node to node-c');
    cluster.bind('gail@x.example/r', B);
    cluster.bind('gail@x.example/r', A);
    cluster.unbind('gail@x.example/r', B);
    expectRouting(t, cluster, a, 'moved from node-b to this node');
  },

  'a user whose sessions have all ended is online nowhere': (t, cluster) => {
    const a = cluster.addNode(A, [B, C]);
    const resources: [string, string][] = [['hal@x.example/1', B], ['hal@x.example/2', C], ['hal@x.example/3', A]];
    for (const [jid, node] of resources) cluster.bind(jid, node);
    cluster.presence('hal@x.example/1', B, true);
    expectRouting(t, cluster, a, 'online on three nodes');
    for (const [jid, node] of resources) cluster.unbind(jid, node);
    expectRouting(t, cluster, a, 'after every session ended');
  },

  'a peer that leaves is no longer a destination and what came from it is forgotten': (t, cluster) => {
    const a = cluster.addNode(A, [B, C]);
    cluster.bind('ivy@x.example/1', B);
    cluster.bind('ivy@x.example/2', C);
    cluster.bind('jon@x.example/1', B);
    cluster.bind('kim@x.example/1', A);
    cluster.presence('ivy@x.example/1', B, true);
    cluster.presence('jon@x.example/1', B, true);
    cluster.linkDown(a, B);
    expectRouting(t, cluster, a, 'after node-b left');
  },

  'a peer that comes back after a partition is known by what it holds now': (t, cluster) => {
    const a = cluster.addNode(A, [B, C]);
    cluster.bind('lea@x.example/1', B);
    cluster.bind('lea@x.example/2', B);
    cluster.bind('max@x.example/1', B);
    cluster.presence('lea@x.example/1', B, true, 3);
    cluster.linkDown(a, B);
    // While cut off, node-b's sessions change and node-a hears nothing of it.
    cluster.unbind('lea@x.example/2', B);
    cluster.unbind('max@x.example/1', B);
    cluster.bind('ned@x.example/1', B);
    cluster.presence('lea@x.example/1', B, true, 7);
    cluster.linkUp(a, B);
    expectRouting(t, cluster, a, 'after node-b came back and synced');
  },

  "a peer that joins rebuilds its routing from this node's snapshot": (t, cluster) => {
    const a = cluster.addNode(A, [C]);
    cluster.bind('oli@x.example/1', A);
    cluster.bind('oli@x.example/2', A);
    cluster.bind('pam@x.example/1', A);
    cluster.presence('oli@x.example/1', A, true, 2);
    cluster.bind('oli@x.example/3', C);
    cluster.bind('quin@x.example/1', C);
    cluster.bind('rex@x.example/1', A);
    cluster.unbind('rex@x.example/1', A);
    cluster.bind('sue@x.example/1', A);
    cluster.bind('sue@x.example/1', C);
    cluster.unbind('sue@x.example/1', A);
    expectRouting(t, cluster, a, 'on node-a before node-b joins');
    const b = cluster.addNode(B, [C, A]);
    cluster.linkUp(a, B);
    expectRouting(t, cluster, b, 'on node-b, rebuilt from the syncs of node-c and node-a');
    cluster.bind('tom@x.example/1', B);
    cluster.presence('oli@x.example/2', A, true, -5);
    cluster.unbind('pam@x.example/1', A);
    expectRouting(t, cluster, a, 'on node-a after later events');
    expectRouting(t, cluster, b, 'on node-b after later events');
  },
};
