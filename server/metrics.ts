import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { TransportKind } from './c2s/transport';
import type { FederationStatus } from './s2s/federation';
import { SERVER_VERSION } from './version';

/** Stanza kinds counted separately; anything else counts as 'other'. */
const KINDS = ['message', 'presence', 'iq', 'other'] as const;
type KindIndex = 0 | 1 | 2 | 3;

/** Upper bounds of the routing latency buckets, in seconds (100 µs to 1 s). */
const ROUTING_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
/** Resolution of the event-loop delay monitor [10 ms], as prom-client's default metrics use. */
const EVENT_LOOP_RESOLUTION_MS = 10;

/** The hooks the stream state machine calls (C2SContext.stats): counter increments only. */
export interface StreamStats {
  authSuccess(): void;
  authFailure(): void;
  /** A password login held back by the guessing limits: for its account's failures, or its address's. */
  authDelayed(why: 'account' | 'address'): void;
  /** A stanza from a bound client, before routing. */
  stanzaIn(name: string): void;
  /** A stanza delivered to a bound client. */
  stanzaOut(name: string): void;
  /** How long the router took with one client stanza (ms, from performance.now()). */
  routed(milliseconds: number): void;
}

export interface MetricSources {
  /** Bound sessions on this node. */
  sessions(): number;
  /** Messages waiting in offline storage (all users); read from the database at scrape time. */
  offlineMessages(): Promise<number>;
  /** The batched offline writer: its queue and what became of the messages it took. */
  offlineWriter?: { readonly pending: number; readonly counters: Readonly<Record<'stored' | 'full' | 'failed' | 'batches' | 'retries', number>> };
  /** XEP-0357 notifications sent to app servers (and those that could not be). */
  push?: { readonly counters: Readonly<Record<'sent' | 'failed', number>> };
  /** Cluster-wide chores this node ran, by name. */
  chores?: ReadonlyMap<string, number>;
  /** XEP-0313 archive writes. */
  archive?: { readonly counters: Readonly<Record<'archived' | 'skipped' | 'dropped', number>> };
  /** Archive rows (users' and rooms') waiting for the database, and how often client intake was held for them. */
  archiveBacklog?: { readonly rows: number; readonly holds: number };
  /** Log records a shipper (Elasticsearch) did not take. */
  droppedLogRecords?: () => number;
  /** XEP-0198 stream management: sessions waiting to be resumed, and what became of resumptions. */
  streamManagement?: { readonly hibernating: number; readonly counters: Readonly<Record<'enabled' | 'hibernated' | 'resumed' | 'failedResumptions' | 'expired' | 'requeued' | 'movedAway', number>> };
}

function kindIndex(name: string): KindIndex {
  switch (name) {
    case 'message': return 0;
    case 'presence': return 1;
    case 'iq': return 2;
    default: return 3;
  }
}

/**
 * One node's Prometheus metrics (GET /metrics), in a registry of its own: tests run several
 * nodes in one process, and the global default registry would mix them. Hot-path hooks only
 * bump plain numbers; the prom-client metrics read them when scraped.
 */
export class NodeMetrics {
  readonly registry = new Registry();
  private readonly stanzasIn = [0, 0, 0, 0];
  private readonly stanzasOut = [0, 0, 0, 0];
  private readonly auth = { success: 0, failure: 0, delayedAccount: 0, delayedAddress: 0 };
  private readonly connectionCounts = new Map<TransportKind, () => number>();
  private readonly loopDelay: IntervalHistogram;
  private readonly routing: Histogram;
  private readonly startedAt = Date.now();

  /** What C2SStream calls; bound so it can be handed over as a plain object. */
  readonly stats: StreamStats = {
    authSuccess: () => { this.auth.success++; },
    authFailure: () => { this.auth.failure++; },
    authDelayed: (why) => { if (why === 'account') this.auth.delayedAccount++; else this.auth.delayedAddress++; },
    stanzaIn: (name) => { this.stanzasIn[kindIndex(name)]++; },
    stanzaOut: (name) => { this.stanzasOut[kindIndex(name)]++; },
    routed: (milliseconds) => { this.routing.observe(milliseconds / 1000); },
  };

  constructor(node: string, private readonly sources: MetricSources) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ node });
    const self = this;
    this.loopDelay = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
    this.loopDelay.enable();

    // prom-client's process and Node.js metrics (CPU, memory, handles, GC, event loop), named as
    // every Node.js exporter names them.
    collectDefaultMetrics({ register: this.registry });
    new Counter({
      name: 'xmpp_log_dropped_records_total', help: 'Log records the log shipper (Elasticsearch) did not take.', registers,
      collect() {
        this.reset();
        this.inc(self.sources.droppedLogRecords?.() ?? 0);
      },
    });
    new Gauge({
      name: 'xmpp_info', help: 'Always 1; the server version is in the label.', labelNames: ['version'], registers,
      collect() { this.set({ version: SERVER_VERSION }, 1); },
    });
    new Gauge({
      name: 'xmpp_uptime_seconds', help: 'Seconds since this node started.', registers,
      collect() { this.set((Date.now() - self.startedAt) / 1000); },
    });
    new Gauge({
      name: 'xmpp_connections', help: 'Open client connections, by transport.', labelNames: ['transport'], registers,
      collect() { for (const [transport, count] of self.connections()) this.set({ transport }, count); },
    });
    new Gauge({
      name: 'xmpp_sessions', help: 'Bound client sessions (resources) on this node.', registers,
      collect() { this.set(self.sources.sessions()); },
    });
    for (const [direction, counts] of [['in', this.stanzasIn], ['out', this.stanzasOut]] as const) {
      new Counter({
        name: `xmpp_stanzas_${direction}_total`,
        help: direction === 'in' ? 'Stanzas received from bound clients, by kind.' : 'Stanzas delivered to bound clients, by kind.',
        labelNames: ['kind'], registers,
        collect() {
          this.reset();
          KINDS.forEach((kind, i) => this.inc({ kind }, counts[i]));
        },
      });
    }
    new Counter({
      name: 'xmpp_auth_total', help: 'SASL authentication outcomes.', labelNames: ['result'], registers,
      collect() {
        this.reset();
        this.inc({ result: 'success' }, self.auth.success);
        this.inc({ result: 'failure' }, self.auth.failure);
      },
    });
    new Counter({
      name: 'xmpp_auth_delayed_total', help: 'Password logins held back by the guessing limits, by what triggered it (the account\'s failures from every address, or the address\'s for every account).',
      labelNames: ['by'], registers,
      collect() {
        this.reset();
        this.inc({ by: 'account' }, self.auth.delayedAccount);
        this.inc({ by: 'address' }, self.auth.delayedAddress);
      },
    });
    this.routing = new Histogram({
      name: 'xmpp_routing_latency_seconds', help: 'Time the router takes with one stanza from a client, until delivered, stored or answered.',
      buckets: ROUTING_BUCKETS, registers,
    });
    new Gauge({
      name: 'xmpp_offline_messages', help: 'Messages waiting in offline storage, all users (read from the database).', registers,
      async collect() {
        try {
          this.set(await self.sources.offlineMessages());
        } catch {
          this.reset(); // database unreachable: no value rather than a stale one
        }
      },
    });
    new Gauge({
      name: 'xmpp_mam_backlog_rows', help: 'XEP-0313 archive rows (users\' and rooms\') accepted and not yet written; past --mam-backlog-limit, clients are not read from.', registers,
      collect() { this.set(self.sources.archiveBacklog?.rows ?? 0); },
    });
    new Counter({
      name: 'xmpp_mam_backlog_holds_total', help: 'Times this node stopped reading from clients because the archive backlog passed --mam-backlog-limit.', registers,
      collect() {
        this.reset();
        this.inc(self.sources.archiveBacklog?.holds ?? 0);
      },
    });
    new Gauge({
      name: 'xmpp_sm_hibernating_sessions', help: 'XEP-0198 sessions whose connection dropped, waiting to be resumed.', registers,
      collect() { this.set(self.sources.streamManagement?.hibernating ?? 0); },
    });
    const outcomes = (name: string, help: string, read: () => Record<string, number> | undefined) =>
      new Counter({
        name, help, labelNames: ['outcome'], registers,
        collect() {
          this.reset();
          for (const [outcome, count] of Object.entries(read() ?? {})) this.inc({ outcome }, count);
        },
      });
    outcomes('xmpp_sm_resumptions_total', 'XEP-0198 resumptions: resumed here, failed (no such session, or a bad count), expired (not resumed in time), moved (handed over to another node).', () => {
      const c = self.sources.streamManagement?.counters;
      return c && { resumed: c.resumed, failed: c.failedResumptions, expired: c.expired, moved: c.movedAway };
    });
    outcomes('xmpp_push_notifications_total', 'XEP-0357 notifications to app servers, by outcome (sent, failed).', () => self.sources.push?.counters);
    new Counter({
      name: 'xmpp_chore_runs_total', help: 'Cluster-wide chores (archive expiry, token pruning) run by this node: the one holding the chore\'s lease.', labelNames: ['chore'], registers,
      collect() {
        this.reset();
        for (const [chore, runs] of self.sources.chores ?? []) this.inc({ chore }, runs);
      },
    });
    outcomes('xmpp_mam_messages_total', 'XEP-0313 archive rows, by outcome (archived; skipped by the owner\'s preferences or a missing account; dropped when the database did not take them).', () => self.sources.archive?.counters);
    new Counter({
      name: 'xmpp_sm_requeued_total', help: 'Stanzas a client never acknowledged, handled as undelivered when its session ended (other resources or offline storage).', registers,
      collect() {
        this.reset();
        this.inc(self.sources.streamManagement?.counters.requeued ?? 0);
      },
    });
    new Gauge({
      name: 'xmpp_offline_write_queue', help: 'Offline messages waiting to be written to the database.', registers,
      collect() { this.set(self.sources.offlineWriter?.pending ?? 0); },
    });
    new Gauge({
      name: 'xmpp_offline_writes_total',
      help: 'Offline messages by outcome: stored, full (bounced: queue full), failed (bounced: storage unavailable or busy).',
      labelNames: ['outcome'], registers,
      collect() {
        const c = self.sources.offlineWriter?.counters;
        for (const outcome of ['stored', 'full', 'failed'] as const) this.set({ outcome }, c?.[outcome] ?? 0);
      },
    });
    new Gauge({
      name: 'xmpp_event_loop_lag_seconds', help: 'Event-loop delay since the previous scrape.', labelNames: ['stat'], registers,
      collect() {
        const h = self.loopDelay;
        if (h.count > 0) {
          this.set({ stat: 'mean' }, h.mean / 1e9);
          this.set({ stat: 'p50' }, h.percentile(50) / 1e9);
          this.set({ stat: 'p99' }, h.percentile(99) / 1e9);
          this.set({ stat: 'max' }, h.max / 1e9);
        }
        h.reset();
      },
    });
    new Gauge({
      name: 'xmpp_process_memory_bytes', help: 'Memory of the process (shared by all nodes in it).', labelNames: ['type'], registers,
      collect() {
        const m = process.memoryUsage();
        this.set({ type: 'rss' }, m.rss);
        this.set({ type: 'heap_used' }, m.heapUsed);
        this.set({ type: 'heap_total' }, m.heapTotal);
        this.set({ type: 'external' }, m.external);
      },
    });
  }

  /** Registers where the open connections of one transport are counted. */
  trackConnections(kind: TransportKind, count: () => number): void {
    this.connectionCounts.set(kind, count);
  }

  /** Server-to-server figures, read at scrape time: streams per remote domain and direction, stanzas. */
  trackFederation(status: () => FederationStatus): void {
    const registers = [this.registry];
    new Gauge({
      name: 'xmpp_s2s_streams', help: 'Server-to-server streams, by remote domain and direction (outgoing ones being set up count too).',
      labelNames: ['remote', 'direction'], registers,
      collect() {
        this.reset();
        const { outgoing, incoming } = status();
        for (const o of outgoing) this.inc({ remote: o.remote, direction: 'out' });
        for (const i of incoming) this.inc({ remote: i.remote, direction: 'in' });
      },
    });
    new Counter({
      name: 'xmpp_s2s_stanzas_total', help: 'Stanzas to other servers (sent, or bounced to their sender) and from them (received).',
      labelNames: ['outcome'], registers,
      collect() {
        this.reset();
        const { counters } = status();
        for (const outcome of ['sent', 'received', 'bounced'] as const) this.inc({ outcome }, counters[outcome]);
      },
    });
  }

  /** Open connections by transport (every known transport, 0 when it has none). */
  connections(): Map<TransportKind, number> {
    const counts = new Map<TransportKind, number>([['tcp', 0], ['websocket', 0], ['bosh', 0]]);
    for (const [kind, count] of this.connectionCounts) counts.set(kind, count());
    return counts;
  }

  /** Stanza totals, for /status. */
  stanzaTotals(): { in: Record<string, number>; out: Record<string, number> } {
    const table = (counts: number[]) => Object.fromEntries(KINDS.map((kind, i) => [kind, counts[i]]));
    return { in: table(this.stanzasIn), out: table(this.stanzasOut) };
  }

  /** The Prometheus text exposition. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  stop(): void {
    this.loopDelay.disable();
  }
}
