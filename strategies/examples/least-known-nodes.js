// An example custom ClusteringStrategy, in plain JavaScript, for operators who want their own
// routing policy. Use it with:
//   --sm-cluster-strategy-class = ./strategies/examples/least-known-nodes.js
//
// It remembers, like online-users-caching, which node each resource is bound on, but keeps only
// users that have at least one *available* resource: a stanza for a user who is online but has not
// sent presence yet goes to every node. It shows the whole interface; the server checks that every
// method exists when it loads the module.
'use strict';

class LeastKnownNodesStrategy {
  constructor(ctx) {
    this.ctx = ctx;
    this.name = 'least-known-nodes';
    // Unavailable resources are not tracked, so "nobody listed" does not mean "online nowhere".
    this.knowsRemoteSessions = false;
    this.entries = new Map(); // full JID -> entry
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
    if (event.type === 'unbound' || !entry.available) {
      if (this.entries.get(entry.jid)?.node === entry.node) this.entries.delete(entry.jid);
      return;
    }
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
