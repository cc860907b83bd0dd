// An example custom ClusteringStrategy, in plain JavaScript, for operators who want their own
// routing policy. Use it with:
//   --sm-cluster-strategy-class = ./strategies/examples/least-known-nodes.js
// and check a strategy of your own with:
//   npm run test:strategy -- ./my-strategy.js
//
// It remembers, like online-users-caching, which node each resource is bound on, and sends a
// stanza only to the nodes it knows hold the user; but it does not trust an empty answer: for a
// user or resource it has no entry for, a stanza goes to every connected node. It shows the whole
// interface; the server checks that every method exists when it loads the module.
'use strict';

class LeastKnownNodesStrategy {
  constructor(ctx) {
    this.ctx = ctx;
    this.name = 'least-known-nodes';
    // "Nobody listed" falls back to every node, so it does not claim to know where users are.
    this.knowsRemoteSessions = false;
    this.entries = new Map(); // full JID -> entry, for every bound resource, available or not
  }

  nodesForUser(bare) {
    const nodes = new Set();
    for (const entry of this.entries.values()) {
      if (entry.jid.startsWith(bare + '/') && entry.node !== this.ctx.localNode) nodes.add(entry.node);
    }
    return nodes.size > 0 ? [...nodes] : this.ctx.connectedNodes();
  }

  nodesForResource(full) {
    const entry = this.entries.get(full);
    if (entry) return entry.node === this.ctx.localNode ? [] : [entry.node];
    return this.ctx.connectedNodes();
  }

  remoteResources() {
    return [];
  }

  sessionEvent(event) {
    const { entry } = event;
    const known = this.entries.get(entry.jid);
    if (event.type === 'unbound') {
      // Only the session that ended: a newer one with the same JID on another node stays.
      if (known?.node === entry.node) this.entries.delete(entry.jid);
      return;
    }
    // A late presence from the node that lost the resource to another must not move it back.
    if (event.type === 'presence' && known && known.node !== entry.node) return;
    this.entries.set(entry.jid, { ...entry });
  }

  nodeJoined() {}

  nodeLeft(node) {
    for (const [jid, entry] of this.entries) if (entry.node === node) this.entries.delete(jid);
  }

  snapshot() {
    return [...this.entries.values()].filter((entry) => entry.node === this.ctx.localNode);
  }

  stats() {
    return { knownResources: this.entries.size };
  }
}

module.exports = LeastKnownNodesStrategy;
