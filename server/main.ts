import { createHash } from 'node:crypto';
import type net from 'node:net';
import tls from 'node:tls';
import { createMechanisms } from './c2s/sasl';
import { FastTokens } from './c2s/sasl/fast';
import { Chores } from './chores';
import { C2SStream, type C2SContext } from './c2s/stream';
import { ConfigError, loadConfig } from './config/config';
import type { Config } from './config/types';
import { StanzaError, StreamError } from './errors';
import { StreamManagementRegistry, isPersonal } from './c2s/stream-management';
import { NS } from './xml/ns';
import type { Session } from './sm/session';
import { createLogger, type Logger, type RootLogger } from './log';
import { blocking } from './modules/blocking';
import { carbons } from './modules/carbons';
import { push, PushNotifier } from './modules/push';
import { mam } from './modules/mam';
import { ArchiveBacklog, MessageArchive } from './sm/archive';
import { disco } from './modules/disco';
import { admin } from './modules/admin';
import { SessionAdmin } from './sm/session-admin';
import { startControlSocket } from './http/control-socket';
import type { ModuleContext, ServerModule } from './modules/module';
import { offline } from './modules/offline';
import { ping } from './modules/ping';
import { pep } from './modules/pep';
import { privateStorage } from './modules/private';
import { register, registrationHandler } from './modules/register';
import { roster } from './modules/roster';
import { time } from './modules/time';
import { vcard } from './modules/vcard';
import { version } from './modules/version';
import { Element } from 'ltx';
import { LINK } from './cluster/catalogue';
import { Cluster } from './cluster/cluster';
import { componentCluster } from './cluster/component-cluster';
import { Ownership } from './cluster/ownership';
import { shareAddressLimits } from './cluster/shared-limits';
import { Federation } from './s2s/federation';
import { COMPONENT_ACCEPT, ComponentStream, type ExternalEndpoint } from '../components/external';
import { forwardBoshRequests } from './cluster/bosh-forwarding';
import { clusterStatus, registerClusterMetrics } from './cluster/cluster-metrics';
import type { Component } from '../components/component';
import { COMPONENTS } from '../components';
import { ClusterSessions } from './cluster/cluster-sessions';
import { loadStrategy } from '../strategies/load-strategy';
import { tryParseJID, type JID } from './jid';
import { LOCAL_ONLY, type RemoteDelivery } from './sm/remote-delivery';
import { hostJID, Router } from './router';
import { MessageService } from './sm/messages';
import { OFFLINE_WRITER_DEFAULTS, OfflineWriter } from './sm/offline-writer';
import { PresenceService } from './sm/presence';
import { RosterService } from './sm/roster-service';
import { SessionManager } from './sm/session-manager';
import { openStorage } from './storage/open-storage';
import type { Storage } from './storage/types';
import { loadOrCreateCertificate, TicketKeys, type TlsCredentials } from './tls';
import { startWebListeners } from './http/web-listeners';
import { NodeMetrics } from './metrics';
import { listenTcp, reloadCertificate, type TcpTransport } from './transports/tcp';
import { AddressLimits } from './transports/address-limits';
import { SERVER_VERSION } from './version';
import { onOtherWorkers, runPrimary, tellOtherWorkers, workerConfig, workerIndex } from './workers';

/**
 * How long a stopping node keeps the sessions of its clients waiting for them to be resumed on
 * other nodes (a reconnect and a resumption take well under a second) [5 s].
 */
const STOP_RESUME_WINDOW_MS = 5000;
/** How long a node waits for another to hand over a stream-managed session [10 s]. */
const SM_HANDOVER_TIMEOUT_MS = 10_000;
/** Archived messages deleted per statement when they expire [5000]. */
const MAM_EXPIRY_BATCH = 5000;
/** How long a stopping node waits for its peers to acknowledge what it sent them [10 s]. */
const STOP_LINK_QUIET_MS = 10_000;

/** A running node: what tests and the process entry point hold on to. */
export interface XmppNode {
  readonly config: Config;
  readonly logger: Logger;
  readonly storage: Storage;
  readonly sessions: SessionManager;
  readonly router: Router;
  /** The ports actually listened on (useful with port 0); http is undefined when disabled. */
  readonly ports: { c2s: number[]; c2sTls: number[]; s2s: number[]; s2sTls: number[]; external: number[]; ws: number[]; bosh: number[]; http: number | undefined };
  /** Server-to-server, when an s2s port is configured. */
  readonly federation?: Federation;
  /** Prometheus metrics of this node (GET /metrics); the cluster adds its own to metrics.registry. */
  readonly metrics: NodeMetrics;
  /** XEP-0198 sessions of this node. */
  readonly streamManagement: StreamManagementRegistry;
  /** The operator's hand on the sessions of every node (XEP-0133, xmppctl). */
  readonly admin: SessionAdmin;
  /**
   * Applies what can change while running (SIGHUP): the limits (read by every new connection,
   * login attempt and stanza), the archive's backlog limit (at once), the admins, and the TLS
   * certificate (for new connections). Returns what changed.
   */
  reload(next: Config): Promise<string[]>;
  /** TLS session ticket keys from the primary of --workers, which replaces them from now on (tls.ts TicketKeys). */
  useSharedTicketKeys(keys: Buffer): void;
  /** Marks the node draining: readiness turns 503 (balancers send new clients elsewhere); it keeps serving. */
  drain(): void;
  stop(): Promise<void>;
  /** What a stop under way is waiting for (logged at debug, category stop): for whoever wonders why it takes long. */
  readonly stopStep: string | undefined;
}

/**
 * The composition root (STYLE §8): config, logger, storage, certificate, session manager,
 * router, modules and transports, built in this visible order.
 */
export async function startNode(frozen: Config, logger: Logger = createLogger(frozen)): Promise<XmppNode> {
  // The limits and admins may change while the node runs (reload, SIGHUP); the rest of the config is fixed.
  const config: Config = { ...frozen, limits: { ...frozen.limits }, admins: [...frozen.admins] };
  const storage = await openStorage(config.userDbUri, { logger: logger.category('db'), poolSize: config.limits.dbPoolSize });
  const loadCertificate = (c: Config) => loadOrCreateCertificate({ certFile: c.tlsCert, keyFile: c.tlsKey, dataDir: c.dataDir, hosts: c.virtHosts, logger });
  const certificate = await loadCertificate(config);
  // TLS session tickets for every client listener, replaced hourly (tls.ts says why).
  const tickets = new TicketKeys();
  const clientTls = (): TlsCredentials => ({ cert: certificate.cert, key: certificate.key, ...tickets.options });
  // STARTTLS takes the current context at each handshake: a reload (SIGHUP) or new ticket keys replace it.
  let secureContext = tls.createSecureContext(clientTls());

  const sessions = new SessionManager();
  const router = new Router(new Set(config.virtHosts), sessions, logger.category('router'));
  // In a cluster, RFC 6121 delivery reaches the other nodes through the strategy and the links.
  const cluster = config.clusterMode ? createCluster(config, storage, logger, () => sessions.count) : undefined;
  const clusterSessions = cluster
    ? new ClusterSessions(
        cluster,
        loadStrategy(config.smClusterStrategyClass, { localNode: cluster.localNode, connectedNodes: () => cluster.connectedNodes() }),
        sessions,
        logger.category('cluster'),
      )
    : undefined;
  const remote: RemoteDelivery = clusterSessions ?? LOCAL_ONLY;
  router.setRemote(remote);
  router.setAccountCheck(async (bare) => (await storage.users.get(bare)) !== undefined);
  const rosterService = new RosterService(storage, sessions, remote);
  const presence = new PresenceService(router, sessions, rosterService, storage, logger, remote);
  const offlineWriter = new OfflineWriter(
    storage.offline,
    {
      ...OFFLINE_WRITER_DEFAULTS,
      // Getters: the limits may be reloaded (SIGHUP).
      get queueLimit() { return config.limits.offlineWriteQueue; },
      get maxWaitMs() { return config.limits.offlineWriteTimeout * 1000; },
      get perUserLimit() { return config.limits.offlineQueueLength; },
    },
    logger.category('db'),
  );
  const messages = new MessageService(router, sessions, storage, offlineWriter, logger, remote);
  // Stored messages for users who are online somewhere go to them at once (a race, a failover).
  offlineWriter.onStored((users) => {
    messages.deliverStored(users);
    remote.offlineStored(users);
  });
  router.setDelivery({
    outboundMessage: (session, stanza, to) => messages.outbound(session, stanza, to),
    inboundMessage: (stanza, from, to) => messages.inbound(stanza, from, to),
    outboundPresence: (session, stanza, to) => presence.outbound(session, stanza, to),
    inboundPresence: (stanza, from, to) => presence.inbound(stanza, from, to),
  });

  const pushNotifier = new PushNotifier(router, storage, logger.category('c2s'));
  // Archive rows the database has not taken yet (the rooms' archives add to the same count): past
  // --mam-backlog-limit no client is read from until half of them are written.
  const archiveBacklog = new ArchiveBacklog();
  archiveBacklog.setLimit(config.mamBacklogLimit);
  // XEP-0313: the users' archives, written in batches by the node that routes each message.
  const archive = new MessageArchive(storage, logger.category('db'), archiveBacklog, 'accounts', sessions, rosterService);
  // XEP-0133 and xmppctl act on the sessions of every node through this.
  const sessionAdmin = new SessionAdmin(sessions, config.clusterHostname, cluster, logger.category('admin'));
  const moduleContext: ModuleContext = {
    config, logger, storage, router, sessions, roster: rosterService, presence, messages, remote, pushNotifier, archive, admin: sessionAdmin,
  };
  const modules: ServerModule[] = [disco, ping, version, time, roster, offline, carbons, vcard, privateStorage, blocking, pep, push, mam, admin];
  if (config.registration) modules.push(register);
  for (const module of modules) module(moduleContext);

  // Housekeeping that must run once per cluster: the node holding a chore's lease runs it.
  const chores = new Chores(storage.leases, config.clusterHostname, () => config.choreInterval, logger.category('db'));
  // Components (MUC, PubSub) at <name>.<vhost>; in a cluster each item has one owner node.
  const ownership = cluster ? new Ownership(storage.knex, cluster, logger.category('cluster')) : undefined;
  const components: Component[] = [];
  for (const spec of config.components) {
    const factory = COMPONENTS[spec.kind];
    if (!factory) throw new Error(`--comp-class-${spec.index}: no component of kind ${spec.kind}`);
    const domains = config.virtHosts.map((host) => `${spec.name}.${host}`);
    let component: Component | undefined;
    const deliver = (stanza: Element, from: JID, to: JID, forwardedBy?: string, home?: string) => component!.handle(stanza, from, to, forwardedBy, home);
    component = factory({
      name: spec.name,
      domains,
      config,
      option: (key) => config.raw.get(`--${spec.name}-${key}`),
      logger: logger.category(spec.name),
      storage,
      archiveBacklog,
      router,
      cluster: cluster && ownership ? componentCluster(spec.name, cluster, ownership, deliver, logger.category(spec.name)) : undefined,
      chores,
    });
    for (const domain of domains) router.addDomain(domain, (stanza, from, to) => deliver(stanza, from, to));
    components.push(component);
  }

  // XEP-0357: the node that stores a message offline, or holds it for a session waiting to be
  // resumed, tells the user's app servers (once: only that node has the message).
  messages.onStoredOffline((user, stanza) => {
    const jid = tryParseJID(user);
    if (isPersonal(stanza) && jid) pushNotifier.notify(jid, stanza, () => storage.offline.count(user));
  });
  // XEP-0198: what a session that ends unresumed had not acknowledged is handled as undelivered
  // to a resource that is gone (RFC 6121 §8.5.3.2.1): other resources, else offline storage.
  const streamManagement = new StreamManagementRegistry(sessions, {
    get resumptionTimeout() { return config.limits.smResumptionTimeout; },
    get maxUnacked() { return config.limits.smMaxUnacked; },
    localNode: cluster ? config.clusterHostname : undefined,
    logger: logger.category('c2s'),
    resumed: (session) => messages.deliverStored([session.bare]),
    undelivered: (stanza, session) => undelivered(stanza, session),
  });
  const deliveryTrace = logger.category('delivery');
  const undelivered = (stanza: Element, session: Session) => {
    const from = tryParseJID(String(stanza.attrs.from ?? ''));
    const to = tryParseJID(String(stanza.attrs.to ?? '')) ?? session.jid;
    const type = String(stanza.attrs.type ?? (stanza.name === 'message' ? 'normal' : ''));
    if (!from) return;
    if (stanza.name === 'message') {
      // Room traffic, errors and headlines are not kept (as for an offline user); carbons were copies.
      if (type === 'groupchat' || type === 'error' || type === 'headline') return;
      if (stanza.getChild('received', NS.CARBONS) || stanza.getChild('sent', NS.CARBONS)) return;
      if (deliveryTrace.debugEnabled) deliveryTrace.debug('undelivered: its session ended', { id: stanza.attrs.id, to: to.toString(), conn: session.id });
      // Tracked: a node stopping waits for it (and the offline write it makes) before closing the database.
      messages.afterwards(stanza, messages.inbound(stanza, from, to));
    } else if (stanza.name === 'iq' && (type === 'get' || type === 'set')) {
      router.replyError(stanza, new StanzaError('service-unavailable', 'the recipient\'s session ended before it answered'));
    }
  };
  // A delivery under way when its session ended (the client left, or this node is stopping) is
  // handled as undelivered too, instead of vanishing with the session.
  sessions.setAfterEnd((session, stanza) => undelivered(stanza, session));
  if (cluster) {
    // Resumption on any node: the node named in the id hands the session over on the link.
    const cl = cluster;
    streamManagement.setHandOver(async (node, id, user, h) =>
      (await cl.request(node, LINK.smResume, undefined, { sid: id, user, h: String(h) }, SM_HANDOVER_TIMEOUT_MS)).getChild('handover') ?? new Element('handover', { failed: 'item-not-found' }),
    () => cl.connectedNodes());
    cl.handle(LINK.smResume, (from, msg) => streamManagement.handOver(String(msg.attrs.sid), String(msg.attrs.user), Number(msg.attrs.h), from));
  }

  // Abuse limits per client address (the PROXY protocol's when a balancer speaks it); loopback and
  // --connection-limits-exempt addresses never count. In a cluster they count over every node
  // (registered before the links come up).
  const addressLimits = new AddressLimits(
    () => ({ maxPerAddress: config.limits.maxConnectionsPerIp, maxWaitingPerAddress: config.limits.maxUnauthenticatedPerIp, ratePerSecond: config.limits.connectionRatePerIp }),
    config.connectionLimitsExempt,
  );
  const stopSharingLimits = cluster ? shareAddressLimits(cluster, addressLimits) : undefined;
  if (cluster && clusterSessions) {
    clusterSessions.attach({
      messageToResource: (stanza, to, carbons) => messages.deliverToResource(stanza, to, carbons),
      messageToUser: (stanza, user) => messages.messageToUser(stanza, user),
      stanzaToResource: (stanza, to) => presence.stanzaToResource(stanza, to),
      presenceToUser: (stanza, user) => presence.presenceToUser(stanza, user),
      answerProbe: (from, to) => presence.answerProbeHere(from, to),
      presenceAllowed: (stanza, from, to) => router.passInbound(stanza, from, to).catch(() => false),
      carbons: (kind, stanza, user, exclude) => messages.carbonsHere(kind, stanza, user, exclude),
      rosterPush: (user, query) => rosterService.pushHere(user, query),
      blocklistChanged: (user, command) => moduleContext.blocklistChangedHere?.(user, command),
      archivePrefsChanged: (user) => archive.prefsChanged(user),
      notifyInterested: (stanza, users, feature) => moduleContext.notifyInterestedHere?.(stanza, users, feature),
      presenceSnapshot: () => presence.broadcastSnapshot(),
      deliverStored: (users) => messages.deliverStored(users),
      deliverStoredToOnlineUsers: () => messages.deliverStoredToOnlineUsers(),
    });
    notifyAdminsOfMembership(cluster, router, config);
    // A node that left may have stored messages for users online here after its link closed (what
    // that link left unacknowledged, a delivery racing their new login): they get them now.
    cluster.onNodeGone((node) => void messages.deliverStoredToOnlineUsers().catch((err) =>
      logger.warn('delivering stored messages after a node left failed', { peer: node, err: String(err) })));
    await cluster.start();
    // DESIGN: a new node learns who is online where before it takes clients (with a timeout).
    await clusterSessions.waitForSync(config.clusterSyncTimeout * 1000);
  }
  for (const component of components) await component.start?.();

  // XEP-0484 tokens live in the shared database: any node checks a token another node issued.
  const fastTokens = new FastTokens(storage.fastTokens, () => config.limits.fastTokenLifetime);
  chores.add({ name: 'fast-token-expiry', run: async () => void (await fastTokens.prune()) });
  chores.add({
    name: 'mam-expiry',
    run: async () => {
      if (config.mamRetention === 0) return;
      const cutoff = new Date(Date.now() - config.mamRetention * 1000);
      let deleted = 0;
      for (let n = MAM_EXPIRY_BATCH; n === MAM_EXPIRY_BATCH; deleted += n) n = await storage.archive.removeOlderThan(cutoff, MAM_EXPIRY_BATCH);
      if (deleted > 0) logger.info('expired archived messages', { deleted, before: cutoff.toISOString() });
    },
  });
  chores.start();
  const droppedLogRecords = 'droppedRecords' in logger ? () => (logger as RootLogger).droppedRecords() : undefined;
  const metrics = new NodeMetrics(config.clusterHostname, {
    sessions: () => sessions.count, offlineMessages: () => storage.offline.total(), offlineWriter, streamManagement, push: pushNotifier, droppedLogRecords, archive, archiveBacklog, chores: chores.runs,
  });
  if (cluster && clusterSessions) registerClusterMetrics(metrics.registry, cluster, clusterSessions);
  const streams = new Set<C2SStream>();
  holdClientsForArchive(archiveBacklog, streams, logger.category('db'));
  const c2sContext: C2SContext = {
    streams,
    held: () => archiveBacklog.held,
    config,
    logger: logger.category('c2s'),
    storage,
    router,
    sessions,
    // Unknown users get a fake salt derived from this secret; nodes sharing --cluster-secret agree on it.
    mechanisms: createMechanisms({
      unknownUserIterations: config.scramIterations,
      unknownUserSecret: config.clusterSecret ? createHash('sha256').update(`unknown-user:${config.clusterSecret}`).digest() : undefined,
    }),
    preAuthIq: config.registration ? registrationHandler(moduleContext) : undefined,
    stats: metrics.stats,
    sm: streamManagement,
    fast: fastTokens,
  };
  const connections = new Set<TcpTransport>();
  metrics.trackConnections('tcp', () => connections.size);
  let nextConnection = 0;
  const listen = (port: number, directTls: boolean) =>
    listenTcp({
      port,
      host: config.bindAddress,
      directTls,
      secureContext: () => secureContext,
      certificate: clientTls(),
      limits: config.limits,
      defaultDomain: config.virtHosts[0],
      logger: logger.category('c2s'),
      nextId: () => `c2s-${++nextConnection}`,
      proxyProtocol: config.c2sProxyProtocol,
      trustedProxies: config.trustedProxies,
      addressLimits,
      bytesPerSecond: () => config.limits.clientRateLimit,
      sendQueueBytes: () => config.limits.clientSendQueue,
      onConnection: (transport) => {
        connections.add(transport);
        const stream = new C2SStream(transport, c2sContext);
        transport.attach({
          streamStart: (attrs) => stream.streamStart(attrs),
          element: (element) => stream.element(element),
          streamEnd: () => stream.streamEnd(),
          streamError: (error) => stream.streamError(error),
          closed: (reason) => {
            connections.delete(transport);
            stream.closed(reason);
          },
        });
      },
    });
  const servers: net.Server[] = [];
  const ports = { c2s: [] as number[], c2sTls: [] as number[] };
  for (const port of config.c2sPorts) {
    const server = await listen(port, false);
    servers.push(server);
    ports.c2s.push((server.address() as net.AddressInfo).port);
  }
  for (const port of config.c2sSslPorts) {
    const server = await listen(port, true);
    servers.push(server);
    ports.c2sTls.push((server.address() as net.AddressInfo).port);
  }

  // Federation (RFC 6120 server-to-server, XEP-0220 dialback): on when an s2s port is configured.
  const federation = config.s2sPorts.length + config.s2sSslPorts.length > 0
    ? new Federation({
      serves: (domain) => router.serves(domain),
      ports: config.s2sPorts,
      sslPorts: config.s2sSslPorts,
      bindAddress: config.bindAddress,
      secret: config.s2sSecret,
      staticRoutes: config.s2sStaticRoutes,
      tlsRequired: config.s2sTlsRequired,
      verifyCerts: config.s2sVerifyCerts,
      timeout: config.s2sTimeout,
      authTimeout: config.limits.authTimeout,
      limits: config.limits,
      addressLimits: { maxPerAddress: config.limits.maxConnectionsPerIp, maxWaitingPerAddress: config.limits.maxUnauthenticatedPerIp, ratePerSecond: config.limits.connectionRatePerIp },
      exempt: config.connectionLimitsExempt,
      certificate,
      ca: config.s2sCa,
      dnsServers: config.dnsServers,
      defaultDomain: config.virtHosts[0],
      logger: logger.category('s2s'),
      deliver: (stanza, from, to) => void router.route(stanza, from, to),
      bounce: (stanza, error) => router.replyError(stanza, error),
    })
    : undefined;
  const s2sPorts = federation ? await federation.start() : { s2s: [] as number[], s2sTls: [] as number[] };

  // XEP-0114 external components connect on --external-ports (when any is configured).
  const externals = config.components.flatMap((spec, i) => (spec.kind === 'external' ? [components[i] as unknown as ExternalEndpoint] : []));
  const externalPorts: number[] = [];
  if (externals.length > 0) {
    for (const port of config.externalPorts) {
      const server = await listenTcp({
        port,
        host: config.bindAddress,
        directTls: false,
        secureContext: () => secureContext,
        certificate: clientTls(),
        limits: config.limits,
        defaultDomain: config.virtHosts[0],
        logger: logger.category('external'),
        nextId: () => `ext-${++nextConnection}`,
        addressLimits,
        contentNamespace: COMPONENT_ACCEPT,
        onConnection: (transport) => {
          transport.attach(new ComponentStream(transport, (domain) => externals.find((e) => e.serves(domain)), logger.category('external')));
        },
      });
      servers.push(server);
      externalPorts.push((server.address() as net.AddressInfo).port);
    }
  }
  if (federation) {
    router.setFederation((stanza, from, to) => federation.send(stanza, from, to));
    metrics.trackFederation(() => federation.status());
  }

  // WebSocket (RFC 7395) and BOSH (XEP-0206) feed the same C2SStream as TCP; host-meta (XEP-0156)
  // and /health /status /metrics are served next to them (server/http/web-listeners.ts).
  const web = await startWebListeners({
    config,
    certificate: clientTls(),
    logger,
    storage,
    metrics,
    hosts: router.hosts,
    sessions: () => sessions.count,
    clusterNodes: () => 1 + (cluster?.connectedNodes().length ?? 0),
    clusterStatus: cluster && clusterSessions ? () => clusterStatus(cluster, clusterSessions) : undefined,
    federationStatus: federation ? () => federation.status() : undefined,
    onTransport: (transport) => new C2SStream(transport, c2sContext),
    handlers: components.flatMap((component) => (component.http ? [component.http] : [])),
    draining: () => draining,
    addressLimits,
  });
  if (cluster) forwardBoshRequests(cluster, web.bosh);
  /** New client connections get the current certificate and ticket keys; open ones keep theirs. */
  const renewClientTls = () => {
    const credentials = clientTls();
    secureContext = tls.createSecureContext(credentials);
    for (const server of servers) reloadCertificate(server, credentials);
    web.reloadCertificate(credentials);
  };
  tickets.onChange(renewClientTls);
  const allPorts = { ...ports, ...s2sPorts, external: externalPorts, ...web.ports };
  logger.info('node started', { version: SERVER_VERSION, hosts: config.virtHosts, ...allPorts, db: storage.kind });

  let stopped = false;
  let draining = false;
  let stopStep: string | undefined;
  const stopLogger = logger.category('stop');
  const step = (what: string) => {
    stopStep = what;
    stopLogger.debug(what);
  };
  return {
    get stopStep() {
      return stopStep;
    },
    config,
    logger,
    storage,
    sessions,
    router,
    ports: allPorts,
    federation,
    metrics,
    streamManagement,
    admin: sessionAdmin,
    useSharedTicketKeys(keys) {
      tickets.useShared(keys);
    },
    drain() {
      draining = true;
      void cluster?.drain().catch((err) => logger.warn('could not mark this node draining in cluster_nodes', { err: String(err) }));
    },
    async reload(next) {
      const changed: string[] = [];
      for (const [key, value] of Object.entries(next.limits) as [keyof Config['limits'], number][]) {
        if (config.limits[key] === value) continue;
        // The database pool is sized once, when the node opens the database.
        if (key === 'dbPoolSize') {
          changed.push(`dbPoolSize (needs a restart, still ${config.limits.dbPoolSize})`);
          continue;
        }
        changed.push(`${key}=${value}`);
        config.limits[key] = value;
      }
      if (next.mamBacklogLimit !== archiveBacklog.limit) {
        archiveBacklog.setLimit(next.mamBacklogLimit);
        changed.push(`mamBacklogLimit=${next.mamBacklogLimit}`);
      }
      if (next.admins.join(',') !== config.admins.join(',')) {
        // In place: the admin commands and the components read this array at each use.
        config.admins.splice(0, config.admins.length, ...next.admins);
        changed.push(`admins=${next.admins.join(',') || '(none)'}`);
      }
      const fresh = await loadCertificate(next);
      if (fresh.cert !== certificate.cert || fresh.key !== certificate.key) {
        Object.assign(certificate, fresh);
        renewClientTls();
        changed.push('certificate');
      }
      return changed;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      // Peers place nothing new here from now on (also when stopped without a drain window); a
      // database out of reach does not hold the stop up for long.
      step('marking this node draining in cluster_nodes');
      if (cluster) {
        const marked = cluster.drain().catch((err) => logger.warn('could not mark this node draining in cluster_nodes', { err: String(err) }));
        await Promise.race([marked, new Promise((resolve) => setTimeout(resolve, STOP_LINK_QUIET_MS / 2).unref())]);
      }
      step('stopping chores and listeners');
      tickets.stop();
      await chores.stop();
      addressLimits.stop();
      stopSharingLimits?.();
      for (const server of servers) server.close();
      // Each client stream closes itself: <a h/> and the error; a resumable session waits for its
      // client to resume it on another node (which takes it over on the link), any other ends now.
      for (const stream of [...streams]) stream.shutdown(new StreamError('system-shutdown'));
      for (const connection of connections) connection.close(new StreamError('system-shutdown'));
      const webClosed = web.close();
      // The sessions' ends (unavailable presence, unacknowledged stanzas to offline storage) run
      // now; their offline writes finish before the database closes (bounded by --offline-write-timeout).
      await new Promise((resolve) => setImmediate(resolve));
      // Deliveries still finishing (a cross-node outcome and its fallback), then the offline writes
      // they made, bounded by --offline-write-timeout.
      const offlineWritesDone = async () => {
        const deadline = Date.now() + config.limits.offlineWriteTimeout * 1000;
        await Promise.race([messages.idle(), new Promise((resolve) => setTimeout(resolve, config.limits.offlineWriteTimeout * 1000).unref())]);
        while (offlineWriter.pending > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      };
      step('waiting for deliveries under way and their offline writes');
      await offlineWritesDone();
      step('closing the web listeners');
      await webClosed;
      // Rooms go to surviving nodes live; then every claim left (pubsub nodes, empty rooms) is
      // given up, so survivors take them at first use instead of after the node timeout.
      step('closing server-to-server streams');
      await federation?.stop();
      for (const [i, component] of components.entries()) {
        step(`stopping component ${config.components[i].name}`);
        await component.stop?.();
      }
      if (ownership) {
        step('giving up rooms and pubsub nodes');
        ownership.leave();
        const released = await ownership.releaseAll().catch((err) => {
          logger.warn('could not give up this node\'s rooms and pubsub nodes; survivors take them when it times out', { err: String(err) });
          return 0;
        });
        if (released > 0) logger.info('rooms and pubsub nodes given up to the surviving nodes', { items: released });
      }
      // Everything this node sent its peers (the sessions' goodbyes, forwarded stanzas, hand-overs,
      // deliveries finishing) is acknowledged before the links close.
      // Sessions not resumed elsewhere by now end, while the links still carry what they held
      // (other resources, offline storage); from here on a session whose connection drops ends.
      step('waiting for clients to resume their sessions on other nodes');
      // Only another node can take a session over: alone, a node ends them at once.
      const resumeDeadline = Date.now() + (cluster && cluster.connectedNodes().length > 0 ? STOP_RESUME_WINDOW_MS : 0);
      while (streamManagement.waiting > 0 && Date.now() < resumeDeadline) await new Promise((resolve) => setTimeout(resolve, 20));
      step('ending sessions nobody resumed');
      streamManagement.endHibernating();
      await new Promise((resolve) => setImmediate(resolve));
      step('waiting for deliveries under way (after the components)');
      await offlineWritesDone();
      step('waiting until the peers acknowledged all link traffic');
      if (cluster && !(await cluster.quiesce(STOP_LINK_QUIET_MS))) {
        logger.warn('cluster links still had unacknowledged traffic when the node stopped', { links: cluster.linkStats().filter((l) => l.unacknowledged > 0) });
      }
      step('closing the cluster links');
      cluster?.closeLinks();
      // A link that closed with stanzas unacknowledged sends them to offline storage: that too
      // finishes before the node leaves cluster_nodes (the peers then look for stored messages).
      step('storing what closed links left unacknowledged');
      await offlineWritesDone();
      step('leaving cluster_nodes');
      await cluster?.leave();
      metrics.stop();
      step('writing the archive');
      await archive.flush();
      step('closing the database');
      await storage.close();
      stopStep = undefined;
      logger.info('node stopped');
    },
  };
}

function createCluster(config: Config, storage: Storage, logger: Logger, sessionCount: () => number): Cluster {
  return new Cluster(storage.clusterNodes, {
    hostname: config.clusterHostname,
    address: config.clusterAddress,
    port: config.clusterPort,
    advertisePort: config.clusterAdvertisePort,
    bindAddress: config.bindAddress,
    secret: config.clusterSecret,
    version: SERVER_VERSION,
    heartbeat: config.clusterHeartbeat,
    nodeTimeout: config.clusterNodeTimeout,
    linkHeartbeat: config.clusterLinkHeartbeat,
    linkTimeout: config.clusterLinkTimeout,
    connections: sessionCount,
    logger: logger.category('cluster'),
  });
}

/**
 * DESIGN: admins get a message when a node joins or leaves. One node speaks for the cluster: the
 * first by name among this node and its connected peers, so admins hear it once.
 */
function notifyAdminsOfMembership(cluster: Cluster, router: Router, config: Config): void {
  const tell = (text: string) => {
    const speaker = [cluster.localNode, ...cluster.connectedNodes()].sort()[0];
    if (speaker !== cluster.localNode || config.admins.length === 0) return;
    const domain = config.virtHosts[0];
    for (const admin of config.admins) {
      const to = tryParseJID(admin);
      if (!to) continue;
      const message = new Element('message', { from: domain, to: to.toString(), type: 'normal', id: `cluster-${Date.now().toString(36)}` });
      message.c('subject').t('Cluster membership');
      message.c('body').t(text);
      void router.route(message, hostJID(domain), to);
    }
  };
  cluster.onNodeUp((node) => tell(`Cluster node ${node} joined (seen from ${cluster.localNode}).`));
  cluster.onNodeDown((node, reason) => tell(`Cluster node ${node} left: ${reason} (seen from ${cluster.localNode}).`));
}

/** Longest the warning about holding clients for the archive stays quiet after it was given [60 s]. */
const HOLD_WARNING_INTERVAL_MS = 60_000;

/**
 * While the archive backlog is past --mam-backlog-limit, no client stream is read from: senders
 * wait in TCP (their own send buffers, then their apps) instead of their rows being dropped. One
 * warning a minute at most says so; xmpp_mam_backlog_holds_total counts every hold.
 */
function holdClientsForArchive(backlog: ArchiveBacklog, streams: Set<C2SStream>, logger: Logger): void {
  let warnedAt = -Infinity;
  let holdsWarned = 0;
  backlog.onChange((held) => {
    for (const stream of streams) stream.pauseReading(held);
    if (!held || Date.now() - warnedAt < HOLD_WARNING_INTERVAL_MS) return;
    logger.warn(`archive: ${backlog.rows} rows wait for the database (--mam-backlog-limit ${backlog.limit}); clients are not read from until half are written`, {
      holdsSinceLastWarning: backlog.holds - holdsWarned,
    });
    warnedAt = Date.now();
    holdsWarned = backlog.holds;
  });
}

/** Process entry point: `node dist/server/main.js --config FILE [--key=value ...]`. */
async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  // --check-config: validate (the file and the command line) and exit, as `xmppctl check-config`.
  const checkOnly = argv.includes('--check-config');
  let config: Config;
  try {
    config = loadConfig(argv.filter((arg) => arg !== '--check-config'));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  if (checkOnly) {
    for (const warning of config.warnings ?? []) process.stdout.write(`warning: ${warning}\n`);
    process.stdout.write(`configuration is valid${config.configFile ? `: ${config.configFile}` : ''}\n`);
    process.exit(0);
  }
  const worker = workerIndex();
  if (config.workers > 1 && worker === undefined) {
    // The primary of --workers N: it forks the nodes and serves nothing itself.
    const logger = createLogger(config);
    for (const warning of config.warnings ?? []) logger.warn(warning);
    const code = await runPrimary(config, logger);
    await logger.close();
    process.exit(code);
  }
  const forThisProcess = (c: Config) => (worker === undefined ? c : workerConfig(c, worker));
  config = forThisProcess(config);
  const logger = createLogger(config);
  if (worker === undefined) for (const warning of config.warnings ?? []) logger.warn(warning);
  const node = await startNode(config, logger);
  let control: { close(): Promise<void> } | undefined;
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info('shutting down', { signal });
    void control?.close();
    // The last lines reach the log file (and Elasticsearch) before the process ends.
    const exit = (code: number) => logger.close().finally(() => process.exit(code));
    node.stop().then(
      () => exit(0),
      (err) => {
        logger.error('shutdown failed', { err: String(err) });
        return exit(1);
      },
    );
  };
  process.once('SIGINT', () => shutdown('SIGINT'));
  // SIGTERM drains first: --drain-grace seconds during which readiness is 503 (balancers stop
  // sending new clients) while everything keeps working; then the node stops. A second SIGTERM
  // stops it at once.
  let drainTimer: NodeJS.Timeout | undefined;
  process.on('SIGTERM', () => {
    if (drainTimer || config.drainGrace === 0) {
      clearTimeout(drainTimer);
      shutdown('SIGTERM');
      return;
    }
    node.drain();
    logger.info('draining before stopping', { graceSeconds: config.drainGrace });
    drainTimer = setTimeout(() => shutdown('SIGTERM'), config.drainGrace * 1000);
  });
  // SIGHUP (and xmppctl reload): reopen the log file (after rotation) and apply what can change
  // live. A configuration with errors is refused and the running one kept.
  const reload = async (how: string): Promise<{ ok: boolean; message: string }> => {
    logger.reopen();
    let next: Config;
    try {
      next = forThisProcess(loadConfig(argv));
    } catch (err) {
      const message = err instanceof ConfigError ? err.message : String(err);
      logger.error('reload refused: the configuration has errors; the running one is kept', { err: message });
      return { ok: false, message };
    }
    logger.reconfigure(next);
    try {
      const changed = (await node.reload(next)).join(', ') || 'nothing else';
      logger.info(`configuration reloaded (${how})`, { logLevel: next.logLevel, debug: next.debug.join(',') || undefined, changed });
      return { ok: true, message: changed };
    } catch (err) {
      logger.error('reload failed', { err: String(err) });
      return { ok: false, message: String(err) };
    }
  };
  process.on('SIGHUP', () => void reload('SIGHUP'));
  // xmppctl drain given to worker 1 reaches the others through the primary.
  if (worker !== undefined) {
    onOtherWorkers({
      drain: () => {
        node.drain();
        logger.info('draining (xmppctl drain, through worker 1): readiness is 503, sessions go on');
      },
      ticketKeys: (keys) => node.useSharedTicketKeys(keys),
    });
  }
  // xmppctl's way in (sessions, kick, reload, drain, stats): a Unix socket only this user can open.
  if (config.controlSocket) {
    try {
      control = await startControlSocket(config.controlSocket, {
        node: config.clusterHostname,
        hosts: config.virtHosts,
        admin: node.admin,
        storage: node.storage,
        reload: () => {
          if (worker !== undefined) tellOtherWorkers('reload');
          return reload('xmppctl reload');
        },
        drain: () => {
          node.drain();
          logger.info('draining (xmppctl drain): readiness is 503, sessions go on');
          if (worker !== undefined) tellOtherWorkers('drain');
        },
      }, logger);
    } catch (err) {
      logger.error('no control socket: xmppctl cannot reach this node', { err: String((err as Error)?.message ?? err) });
    }
  }
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`failed to start: ${(err as Error)?.stack ?? err}\n`);
    process.exit(1);
  });
}
