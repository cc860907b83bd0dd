/** The validated, frozen configuration of one node (built once at start-up, never mutated). */
export interface Limits {
  /** Largest stanza in bytes, counted on the wire [262144]. */
  maxStanzaSize: number;
  /** Deepest element nesting, the stream element being depth 1 [32]. */
  maxXmlDepth: number;
  /** Most attributes on one element [64]. */
  maxAttributes: number;
  /** Seconds a new connection has to send its stream header [10]. */
  streamOpenTimeout: number;
  /** Seconds a connection has to authenticate and bind after connecting [60]. */
  authTimeout: number;
  /** Failed SASL attempts one connection may make before it is closed [3]. */
  maxAuthFailures: number;
  /** Failed logins for one account, counted cluster-wide, before it is locked for authLockout [10]. */
  maxAccountAuthFailures: number;
  /** Seconds an account stays locked after maxAccountAuthFailures [300]. */
  authLockout: number;
  /** Wrong passwords from one address (for any accounts), counted cluster-wide, beyond which its password logins are slowed [30]. */
  maxAddressAuthFailures: number;
  /** Open client connections one address may hold, over every node of a cluster; 0: no limit [500]. */
  maxConnectionsPerIp: number;
  /** Open client connections per client address not logged in yet, cluster-wide [100; 0: no limit]. */
  maxUnauthenticatedPerIp: number;
  /** New client connections one address may open a second, over every node of a cluster (bursts of five seconds' worth); 0: no limit [20]. */
  connectionRatePerIp: number;
  /** Bytes a second one client connection (TCP, WebSocket) may send, in bursts of five seconds' worth; 0: no limit [65536]. */
  clientRateLimit: number;
  /** Bytes sent to one client that it has not read (TCP, WebSocket: beyond the kernel's buffers; BOSH: waiting for its next request); past it the stream is closed with policy-violation; 0: no limit [4194304]. */
  clientSendQueue: number;
  /** Messages kept offline per user; more are bounced with service-unavailable [1000]. */
  offlineQueueLength: number;
  /** Offline-storage writes waiting for the database, per node; past it senders wait [10000]. */
  offlineWriteQueue: number;
  /** Seconds an offline write waits for a slow or unreachable database before its sender gets an error [60]. */
  offlineWriteTimeout: number;
  /** Database connections per node (MySQL; SQLite always uses one) [10]. */
  dbPoolSize: number;
  /** XEP-0198: longest a session waits for its client to resume after the connection dropped, in seconds [300]. */
  smResumptionTimeout: number;
  /** XEP-0198: stanzas sent to a client and not yet acknowledged; past it the stream is closed and they are handled as undelivered [5000]. */
  smMaxUnacked: number;
  /** XEP-0484: how long a FAST token logs in before the client must use its password again, in seconds [1814400 = 21 days]. */
  fastTokenLifetime: number;
}

export interface ComponentConfig {
  /** N of --comp-name-N / --comp-class-N. */
  index: number;
  /** Subdomain label: served at <name>.<vhost>. */
  name: string;
  /** Canonical component kind ('muc' | 'pubsub' | 'upload' | 'external') or the class/module given. */
  kind: string;
  /** An external component's handshake secret (--comp-secret-N, XEP-0114). */
  secret?: string;
}

export interface Config {
  virtHosts: string[];
  admins: string[];
  userDb: 'sqlite' | 'mysql' | 'pgsql';
  userDbUri: string;
  c2sPorts: number[];
  c2sSslPorts: number[];
  /** Server-to-server (RFC 6120 with STARTTLS) listeners [5269]; empty: no incoming federation. */
  s2sPorts: number[];
  /** XEP-0114 external component listeners [5347]; empty: none. */
  externalPorts: number[];
  /** Server-to-server direct TLS (XEP-0368) listeners [5270]. */
  s2sSslPorts: number[];
  /** The dialback secret (XEP-0185) every node shares: --s2s-secret, else derived from --cluster-secret, else random per start. */
  s2sSecret: string;
  /** --s2s-static-routes: remote domain -> host and port, instead of DNS. */
  s2sStaticRoutes: Map<string, { host: string; port: number; directTls: boolean }>;
  /** Require STARTTLS on server-to-server streams, both ways [true]. */
  s2sTlsRequired: boolean;
  /** Require remote servers' certificates to be valid for their domain [false: dialback proves the domain]. */
  s2sVerifyCerts: boolean;
  /** Seconds to get a stream to a remote domain authenticated before its stanzas bounce [30]. */
  s2sTimeout: number;
  /** PEM certificates of CAs trusted for remote servers' certificates besides the system's (--s2s-ca-file) [none]. */
  s2sCa: string[];
  /** Name servers for server-to-server SRV and address lookups, "ip" or "ip:port" (--dns-servers) [the system's]. */
  dnsServers: string[];
  wsPorts: number[];
  boshPorts: number[];
  httpPort: number;
  bindAddress: string;
  /**
   * Addresses of TLS-terminating proxies in front of the WebSocket and BOSH ports [none]: from
   * them, `X-Forwarded-Proto: https` makes a connection count as encrypted (so PLAIN is offered)
   * and X-Forwarded-For names the client.
   */
  trustedProxies: string[];
  /** Client TCP connections from trustedProxies start with a PROXY protocol header (v1 or v2) naming the client. */
  c2sProxyProtocol: boolean;
  /** Addresses the per-address connection limits never apply to [127.0.0.1, ::1]. */
  connectionLimitsExempt: string[];
  /** Seconds a BOSH session may go without a request before it ends (XEP-0124 'inactivity') [60]. */
  boshInactivity: number;
  tlsCert?: string;
  tlsKey?: string;
  /** STARTTLS must complete before SASL on port 5222 [true]. */
  tlsRequired: boolean;
  registration: boolean;
  /** PBKDF2 iterations for new SCRAM credentials [10000]. */
  scramIterations: number;
  clusterMode: boolean;
  clusterHostname: string;
  clusterAddress: string;
  clusterPort: number;
  /** Port peers dial, published in cluster_nodes [= clusterPort]; differs only behind NAT or a proxy. */
  clusterAdvertisePort: number;
  clusterSecret?: string;
  /** Seconds between cluster_nodes upserts [5]. */
  clusterHeartbeat: number;
  /** Seconds after which a cluster_nodes row counts as dead [3 heartbeats]. */
  clusterNodeTimeout: number;
  /** Seconds between heartbeats on an idle cluster link [1]. */
  clusterLinkHeartbeat: number;
  /** Seconds of silence after which a cluster link (and its peer) counts as dead [5 × link heartbeat]. */
  clusterLinkTimeout: number;
  /** Seconds a starting node waits for peers' online-user maps before opening client ports [10]. */
  clusterSyncTimeout: number;
  smClusterStrategyClass: string;
  components: ComponentConfig[];
  minClusterNodes: number;
  /** SIGTERM: seconds the node reports not ready (draining) before it stops; 0 stops at once [0]. */
  drainGrace: number;
  /**
   * Node processes on this machine [1]: each a cluster node of its own (`<hostname>-w<k>`, cluster
   * port and HTTP port + k - 1) sharing the client, federation and web ports.
   */
  workers: number;
  /** Seconds between runs of the cluster-wide chores (archive expiry, token pruning) [3600]. */
  choreInterval: number;
  /** XEP-0313: archived messages older than this many seconds are deleted; 0 keeps them [0]. */
  mamRetention: number;
  /**
   * XEP-0313: archive rows waiting for the database above which the node stops reading from client
   * connections, until half of them are written [20000]: a database slower than the traffic slows
   * the senders instead of losing archive rows.
   */
  mamBacklogLimit: number;
  debug: string[];
  logLevel: string;
  logFile?: string;
  logJson: boolean;
  logElasticsearch?: string;
  logElasticsearchIndex?: string;
  /** Folder for the SQLite file and the generated certificate [var]. */
  dataDir: string;
  /** The node's control socket for xmppctl (sessions, kick, reload, drain, stats); undefined when disabled. */
  controlSocket?: string;
  limits: Limits;
  /** Every key as given (after command-line overrides), for components' own keys. */
  raw: ReadonlyMap<string, string>;
  /** Absolute path of the properties file read, when there was one. */
  configFile?: string;
  /** Harmless oddities found while loading (duplicate keys, ignored Tigase keys), for main to log. */
  warnings?: readonly string[];
}
