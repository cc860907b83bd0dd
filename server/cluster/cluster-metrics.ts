import { Counter, Gauge, type Registry } from 'prom-client';
import type { Cluster } from './cluster';
import type { ClusterSessions } from './cluster-sessions';

/** The cluster's figures for /status: nodes, links, queues, strategy cache, forwarding. */
export function clusterStatus(cluster: Cluster, sessions: ClusterSessions): Record<string, unknown> {
  return {
    node: cluster.localNode,
    strategy: sessions.strategy.name,
    nodesKnown: cluster.liveNodes(),
    nodesConnected: cluster.connectedNodes(),
    nodesDraining: cluster.liveNodes().filter((node) => cluster.isDraining(node)),
    links: cluster.linkStats(),
    strategyStats: sessions.stats(),
    forwarded: Object.fromEntries(sessions.counters.forwarded),
    refusedSends: cluster.counters.refusedSends,
    linkDrops: cluster.counters.linkDrops,
    rerouted: cluster.counters.rerouted,
    boshForwarded: cluster.counters.boshForwarded,
  };
}

/** Adds the cluster's metrics to a node's registry; all values are read at scrape time. */
export function registerClusterMetrics(registry: Registry, cluster: Cluster, sessions: ClusterSessions): void {
  const registers = [registry];
  new Gauge({
    name: 'xmpp_cluster_nodes', help: 'Cluster nodes: live rows in cluster_nodes (known, this node included) and peers with a link up (connected).',
    labelNames: ['state'], registers,
    collect() {
      this.set({ state: 'known' }, cluster.liveNodes().length);
      this.set({ state: 'connected' }, cluster.connectedNodes().length);
    },
  });
  new Gauge({
    name: 'xmpp_cluster_link_up', help: '1 when the link to a peer is up.', labelNames: ['peer'], registers,
    collect() {
      this.reset();
      for (const link of cluster.linkStats()) this.set({ peer: link.node }, link.up ? 1 : 0);
    },
  });
  new Gauge({
    name: 'xmpp_cluster_link_queue_bytes', help: 'Bytes waiting to be sent on a link.', labelNames: ['peer'], registers,
    collect() {
      this.reset();
      for (const link of cluster.linkStats()) this.set({ peer: link.node }, link.queuedBytes);
    },
  });
  new Counter({
    name: 'xmpp_cluster_link_stanzas_total', help: 'Messages on the current link to a peer, by direction.', labelNames: ['peer', 'direction'], registers,
    collect() {
      this.reset();
      for (const link of cluster.linkStats()) {
        this.inc({ peer: link.node, direction: 'in' }, link.stanzasIn);
        this.inc({ peer: link.node, direction: 'out' }, link.stanzasOut);
      }
    },
  });
  new Counter({
    name: 'xmpp_cluster_link_bytes_total', help: 'Bytes on the current link to a peer, by direction.', labelNames: ['peer', 'direction'], registers,
    collect() {
      this.reset();
      for (const link of cluster.linkStats()) {
        this.inc({ peer: link.node, direction: 'in' }, link.bytesIn);
        this.inc({ peer: link.node, direction: 'out' }, link.bytesOut);
      }
    },
  });
  new Gauge({
    name: 'xmpp_cluster_strategy', help: 'Figures of the clustering strategy (e.g. cached users and resources).', labelNames: ['strategy', 'figure'], registers,
    collect() {
      this.reset();
      for (const [figure, value] of Object.entries(sessions.stats())) this.set({ strategy: sessions.strategy.name, figure }, value);
    },
  });
  new Counter({
    name: 'xmpp_cluster_forwarded_total', help: 'Stanzas forwarded to peers, by reason (one per destination node).', labelNames: ['reason'], registers,
    collect() {
      this.reset();
      for (const [reason, count] of sessions.counters.forwarded) this.inc({ reason }, count);
    },
  });
  new Counter({
    name: 'xmpp_cluster_refused_sends_total', help: 'Messages a link could not take (down or queue full); the sender answered or stored them.', registers,
    collect() {
      this.reset();
      this.inc(cluster.counters.refusedSends);
    },
  });
  new Counter({
    name: 'xmpp_cluster_rerouted_total', help: 'Routed stanzas unacknowledged when their link was lost, re-routed here (other resources, offline storage) once.', registers,
    collect() {
      this.reset();
      this.inc(cluster.counters.rerouted);
    },
  });
  new Counter({
    name: 'xmpp_bosh_forwarded_total', help: 'BOSH requests that came to this node for a session of another node and were forwarded to it (0 behind a sticky balancer).', registers,
    collect() {
      this.reset();
      this.inc(cluster.counters.boshForwarded);
    },
  });
}
