/**
 * Loads init.properties plus command-line overrides into one validated, deep-frozen Config.
 * Validated once, at start-up: any bad or unknown key stops the node with a ConfigError that
 * names the key and, when it came from the file, the file and line.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { databaseKindOf, parseDatabaseUri } from '../storage/database-uri';
import { ConfigError, parseProperties, PropertyType } from './properties';
import type { ComponentConfig, Config, Limits } from './types';

export { ConfigError } from './properties';

export interface LoadConfigOptions {
  /** Folder that relative paths (--config, --data-dir, --tls-*, --log-file, sqlite:) resolve against [process.cwd()]. */
  cwd?: string;
  /** Environment; only XMPP_CLUSTER_SECRET is read, so the secret can stay out of argv and files [process.env]. */
  env?: NodeJS.ProcessEnv;
  /** The machine's name, the default --cluster-hostname [os.hostname()]; tests pass their own. */
  hostname?: string;
}

/** What one key holds; used for parsing, type-suffix checks and error messages. */
type Kind = 'boolean' | 'integer' | 'seconds' | 'port' | 'ports' | 'string' | 'list';

const KIND_TEXT: Record<Kind, string> = {
  boolean: 'true or false',
  integer: 'a whole number',
  seconds: 'a number of seconds',
  port: 'a port number',
  ports: 'a comma list of port numbers',
  string: 'text',
  list: 'a comma list',
};

/** Every key we know, with its kind. Defaults are in DEFAULTS and in the code that reads each key. */
const KEYS: Record<string, Kind> = {
  '--virt-hosts': 'list',
  '--admins': 'list',
  '--user-db': 'string',
  '--user-db-uri': 'string',
  '--c2s-ports': 'ports',
  '--c2s-ssl-ports': 'ports',
  '--s2s-ports': 'ports',
  '--external-ports': 'ports',
  '--s2s-ssl-ports': 'ports',
  '--s2s-secret': 'string',
  '--s2s-static-routes': 'string',
  '--s2s-tls-required': 'boolean',
  '--s2s-verify-certs': 'boolean',
  '--s2s-timeout': 'seconds',
  '--s2s-ca-file': 'string',
  '--dns-servers': 'list',
  '--ws-ports': 'ports',
  '--bosh-ports': 'ports',
  '--http-port': 'port',
  '--bind-address': 'string',
  '--trusted-proxies': 'list',
  '--c2s-proxy-protocol': 'boolean',
  '--max-connections-per-ip': 'integer',
  '--connection-rate-per-ip': 'integer',
  '--max-unauthenticated-per-ip': 'integer',
  '--client-rate-limit': 'integer',
  '--client-send-queue': 'integer',
  '--connection-limits-exempt': 'list',
  '--bosh-inactivity': 'seconds',
  '--tls-cert': 'string',
  '--tls-key': 'string',
  '--tls-required': 'boolean',
  '--registration': 'boolean',
  '--scram-iterations': 'integer',
  '--cluster-mode': 'boolean',
  '--cluster-hostname': 'string',
  '--cluster-address': 'string',
  '--cluster-port': 'port',
  '--cluster-advertise-port': 'port',
  '--cluster-secret': 'string',
  '--cluster-heartbeat': 'seconds',
  '--cluster-node-timeout': 'seconds',
  '--cluster-link-heartbeat': 'seconds',
  '--cluster-link-timeout': 'seconds',
  '--cluster-sync-timeout': 'seconds',
  '--sm-cluster-strategy-class': 'string',
  '--min-cluster-nodes': 'integer',
  '--chore-interval': 'seconds',
  '--drain-grace': 'seconds',
  '--workers': 'string',
  '--control-socket': 'string',
  '--mam-retention': 'seconds',
  '--mam-backlog-limit': 'integer',
  '--debug': 'list',
  '--log-level': 'string',
  '--log-file': 'string',
  '--log-json': 'boolean',
  '--log-elasticsearch': 'string',
  '--log-elasticsearch-index': 'string',
  '--data-dir': 'string',
  '--max-stanza-size': 'integer',
  '--max-xml-depth': 'integer',
  '--max-attributes': 'integer',
  '--stream-open-timeout': 'seconds',
  '--auth-timeout': 'seconds',
  '--max-auth-failures': 'integer',
  '--max-account-auth-failures': 'integer',
  '--max-address-auth-failures': 'integer',
  '--auth-lockout': 'seconds',
  '--offline-queue-length': 'integer',
  '--offline-write-queue': 'integer',
  '--offline-write-timeout': 'seconds',
  '--user-db-pool-size': 'integer',
  '--sm-resume-timeout': 'seconds',
  // The name this key had in the first release with XEP-0198; still read.
  '--sm-resumption-timeout': 'seconds',
  '--sm-max-unacked': 'integer',
  '--fast-token-lifetime': 'seconds',
  // Tigase writes this into generated files; it means nothing here and is ignored.
  'config-type': 'string',
};

const COMPONENT_KEY = /^--comp-(name|class|secret)-(\d+)$/;

/** Defaults, one per key (STYLE §9). Keys not listed have no default (unset) or derive from another. */
const DEFAULTS = {
  virtHosts: ['localhost'],          // --virt-hosts [localhost]
  userDb: 'sqlite' as const,         // --user-db [sqlite]
  // --user-db-uri [sqlite:<data-dir>/xmpp.sqlite], i.e. sqlite:var/xmpp.sqlite
  c2sPorts: [5222],                  // --c2s-ports [5222] (RFC 6120 STARTTLS)
  c2sSslPorts: [5223],               // --c2s-ssl-ports [5223] (XEP-0368 direct TLS)
  s2sPorts: [5269],                  // --s2s-ports [5269] (server-to-server, STARTTLS)
  s2sSslPorts: [5270],               // --s2s-ssl-ports [5270] (server-to-server, XEP-0368 direct TLS)
  s2sTimeout: 30,                    // --s2s-timeout [30 s]
  externalPorts: [5347],             // --external-ports [5347] (XEP-0114 external components)
  wsPorts: [5290],                   // --ws-ports [5290] (RFC 7395)
  boshPorts: [5280],                 // --bosh-ports [5280] (XEP-0206, path /http-bind)
  httpPort: 8080,                    // --http-port [8080] (/health, /status, /metrics)
  bindAddress: '0.0.0.0',            // --bind-address [0.0.0.0]
  trustedProxies: [] as string[],    // --trusted-proxies [none]
  c2sProxyProtocol: false,           // --c2s-proxy-protocol [false]
  connectionLimitsExempt: ['127.0.0.1', '::1'], // --connection-limits-exempt [127.0.0.1, ::1]
  boshInactivity: 60,                // --bosh-inactivity [60 s] (XEP-0124 §10)
  tlsRequired: true,                 // --tls-required [true]
  registration: false,               // --registration [false] (XEP-0077)
  scramIterations: 10000,            // --scram-iterations [10000]
  clusterMode: false,                // --cluster-mode [false]
  // --cluster-hostname [os.hostname()], --cluster-address [= cluster hostname]
  clusterPort: 5777,                 // --cluster-port [5777]
  clusterHeartbeat: 5,               // --cluster-heartbeat [5 s]
  // --cluster-node-timeout [3 × heartbeat]
  clusterLinkHeartbeat: 1,           // --cluster-link-heartbeat [1 s]
  // --cluster-link-timeout [5 × link heartbeat]
  clusterSyncTimeout: 10,            // --cluster-sync-timeout [10 s]
  smClusterStrategyClass: 'broadcast', // --sm-cluster-strategy-class [broadcast]
  minClusterNodes: 1,                // --min-cluster-nodes [1]
  choreInterval: 3600,               // --chore-interval [3600 s]
  drainGrace: 0,                     // --drain-grace [0 s: stop at once]
  workers: 1,                        // --workers [1; auto: one per core]
  mamRetention: 0,                   // --mam-retention [0: kept forever]
  mamBacklogLimit: 20_000,           // --mam-backlog-limit [20000 rows]
  logLevel: 'info',                  // --log-level [info]
  logJson: false,                    // --log-json [false]
  logElasticsearchIndex: 'xmpp-server', // --log-elasticsearch-index [xmpp-server]
  dataDir: 'var',                    // --data-dir [var], relative to the working directory
  controlSocket: 'xmppd.sock',       // --control-socket [xmppd.sock in --data-dir; 0 disables]
  limits: {
    maxStanzaSize: 262144,           // --max-stanza-size [262144 bytes]
    maxXmlDepth: 32,                 // --max-xml-depth [32]
    maxAttributes: 64,               // --max-attributes [64]
    streamOpenTimeout: 10,           // --stream-open-timeout [10 s]
    authTimeout: 60,                 // --auth-timeout [60 s]
    maxAuthFailures: 3,              // --max-auth-failures [3]
    maxAccountAuthFailures: 10,      // --max-account-auth-failures [10]
    authLockout: 300,                // --auth-lockout [300 s]
    maxAddressAuthFailures: 30,      // --max-address-auth-failures [30; 0 turns it off]
    offlineQueueLength: 1000,        // --offline-queue-length [1000]
    offlineWriteQueue: 10000,        // --offline-write-queue [10000]
    offlineWriteTimeout: 60,         // --offline-write-timeout [60 s]
    dbPoolSize: 10,                  // --user-db-pool-size [10]
    smResumptionTimeout: 300,        // --sm-resume-timeout [300 s]
    smMaxUnacked: 5000,              // --sm-max-unacked [5000]
    fastTokenLifetime: 1814400,      // --fast-token-lifetime [1814400 s = 21 days]
    maxConnectionsPerIp: 500,        // --max-connections-per-ip [500; 0: no limit]
    connectionRatePerIp: 20,         // --connection-rate-per-ip [20 a second; 0: no limit]
    maxUnauthenticatedPerIp: 100,    // --max-unauthenticated-per-ip [100; 0: no limit]
    clientRateLimit: 65536,          // --client-rate-limit [65536 bytes a second per connection, bursts of 5 s; 0: no limit]
    clientSendQueue: 4194304,        // --client-send-queue [4 MiB unread per connection; 0: no limit]
  } satisfies Limits,
};

const STRATEGY_ALIASES: Record<string, string> = {
  broadcast: 'broadcast',
  'tigase.cluster.strategy.DefaultClusteringStrategy': 'broadcast',
  'online-users-caching': 'online-users-caching',
  'tigase.cluster.strategy.OnlineUsersCachingStrategy': 'online-users-caching',
  'tigase.server.cluster.strategy.OnlineUsersCachingStrategy': 'online-users-caching',
};

const COMPONENT_ALIASES: Record<string, 'muc' | 'pubsub' | 'upload' | 'external'> = {
  upload: 'upload',
  // XEP-0114: a bridge or bot connecting on --external-ports with --comp-secret-N.
  external: 'external',
  'tigase.server.ext.ComponentProtocol': 'external',
  muc: 'muc',
  'tigase.muc.MUCComponent': 'muc',
  'tigase.muc.cluster.MUCComponentClustered': 'muc',
  pubsub: 'pubsub',
  'tigase.pubsub.PubSubComponent': 'pubsub',
  'tigase.pubsub.cluster.PubSubComponentClustered': 'pubsub',
};

const LOG_LEVELS = ['error', 'warn', 'info', 'verbose', 'debug', 'silly'];

const COMMAND_LINE = 'command line';

/** One key as given, and where. */
interface Setting {
  key: string;
  value: string;
  source: string;
  line?: number;
  type?: PropertyType;
  /** Folder that a relative module path in this setting resolves against. */
  baseDir: string;
}

/**
 * Builds the node's configuration from `argv` (process.argv.slice(2)): `--config FILE` (or
 * `--config=FILE`) names the properties file, and every other `--key=value` / `--key value`
 * overrides the file. Without `--config`, defaults and command-line keys only.
 * Relative paths resolve against the working directory; a strategy module path given in the
 * file resolves against the file's folder.
 */
export function loadConfig(argv: string[], opts: LoadConfigOptions = {}): Config {
  const cwd = path.resolve(opts.cwd ?? process.cwd());
  const env = opts.env ?? process.env;
  const { configFile, overrides } = parseArgv(argv, cwd);
  const warnings: string[] = [];

  const settings = new Map<string, Setting>();
  if (configFile !== undefined) {
    let text: string;
    try {
      text = fs.readFileSync(configFile, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read config file ${configFile}: ${(err as Error).message}`, '--config');
    }
    const source = path.relative(cwd, configFile) || configFile;
    for (const entry of parseProperties(text, source)) {
      const earlier = settings.get(entry.key);
      if (earlier) warnings.push(`${source}:${entry.line}: ${entry.key} overrides the value on line ${earlier.line}`);
      settings.set(entry.key, { ...entry, source, baseDir: path.dirname(configFile) });
    }
  }
  for (const o of overrides) settings.set(o.key, o);

  const r = new Reader(settings);
  const components = readComponents(r);
  checkKeys(settings, components);
  if (settings.has('config-type')) warnings.push(`config-type is a Tigase key and is ignored`);

  const dataDir = path.resolve(cwd, r.string('--data-dir') ?? DEFAULTS.dataDir);
  const { userDb, userDbUri } = readUserDb(r, cwd, dataDir);

  const c2sPorts = r.ports('--c2s-ports', DEFAULTS.c2sPorts);
  const c2sSslPorts = r.ports('--c2s-ssl-ports', DEFAULTS.c2sSslPorts);
  const s2sPorts = r.ports('--s2s-ports', DEFAULTS.s2sPorts);
  const s2sSslPorts = r.ports('--s2s-ssl-ports', DEFAULTS.s2sSslPorts);
  const externalPorts = r.ports('--external-ports', DEFAULTS.externalPorts);
  const wsPorts = r.ports('--ws-ports', DEFAULTS.wsPorts);
  const boshPorts = r.ports('--bosh-ports', DEFAULTS.boshPorts);
  const httpPort = r.port('--http-port', DEFAULTS.httpPort, true);
  const clusterPort = r.port('--cluster-port', DEFAULTS.clusterPort, false);
  const clusterMode = r.boolean('--cluster-mode', DEFAULTS.clusterMode);
  const workers = readWorkers(r);
  checkPortClashes(r, { c2sPorts, c2sSslPorts, s2sPorts, s2sSslPorts, externalPorts, wsPorts, boshPorts, httpPort, clusterPort, clusterMode, workers });

  const { tlsCert, tlsKey } = readTlsFiles(r, cwd);

  const clusterHostname = readClusterHostname(r, clusterMode, opts.hostname ?? os.hostname());
  const clusterAddress = r.string('--cluster-address')?.toLowerCase() ?? clusterHostname;
  if (!HOST_OR_IP.test(clusterAddress)) r.fail('--cluster-address', `"${clusterAddress}" is not a host name or IP address`);

  // Seconds; fractions are allowed so tests can run fast clusters.
  const clusterHeartbeat = r.seconds('--cluster-heartbeat', DEFAULTS.clusterHeartbeat);
  const clusterNodeTimeout = r.seconds('--cluster-node-timeout', 3 * clusterHeartbeat);
  if (clusterNodeTimeout <= clusterHeartbeat) {
    // A row is refreshed once per heartbeat; a shorter timeout would declare live nodes dead.
    r.fail('--cluster-node-timeout', `${clusterNodeTimeout} must be longer than --cluster-heartbeat (${clusterHeartbeat})`);
  }

  // Link heartbeats find a dead or partitioned peer within seconds (Tigase: minutes).
  const clusterLinkHeartbeat = r.seconds('--cluster-link-heartbeat', DEFAULTS.clusterLinkHeartbeat);
  const clusterLinkTimeout = r.seconds('--cluster-link-timeout', 5 * clusterLinkHeartbeat);
  if (clusterLinkTimeout <= clusterLinkHeartbeat) {
    r.fail('--cluster-link-timeout', `${clusterLinkTimeout} must be longer than --cluster-link-heartbeat (${clusterLinkHeartbeat})`);
  }
  const clusterSyncTimeout = r.seconds('--cluster-sync-timeout', DEFAULTS.clusterSyncTimeout);

  const clusterSecret = r.string('--cluster-secret') ?? (env.XMPP_CLUSTER_SECRET || undefined);
  if (clusterSecret !== undefined && clusterSecret.length < 16) {
    warnings.push('--cluster-secret is shorter than 16 characters; a longer random secret is safer');
  }

  const logElasticsearch = readElasticsearchUrl(r);
  const logElasticsearchIndex = r.string('--log-elasticsearch-index') ?? DEFAULTS.logElasticsearchIndex;
  // Elasticsearch index names: lowercase, no \ / * ? " < > | , # space, not starting with - _ +.
  if (!/^[a-z0-9][a-z0-9._-]{0,254}$/.test(logElasticsearchIndex)) {
    r.fail('--log-elasticsearch-index', `"${logElasticsearchIndex}" is not a valid Elasticsearch index name (lowercase letters, digits, . _ -)`);
  }

  const logLevel = (r.string('--log-level') ?? DEFAULTS.logLevel).toLowerCase();
  if (!LOG_LEVELS.includes(logLevel)) r.fail('--log-level', `"${logLevel}" is not one of ${LOG_LEVELS.join(', ')}`);
  const logFileSetting = r.string('--log-file');

  const config: Config = {
    virtHosts: readVirtHosts(r),
    admins: readAdmins(r),
    userDb,
    userDbUri,
    c2sPorts,
    c2sSslPorts,
    s2sPorts,
    s2sSslPorts,
    externalPorts,
    s2sSecret: readS2sSecret(r, clusterSecret),
    s2sStaticRoutes: readStaticRoutes(r),
    s2sTlsRequired: r.boolean('--s2s-tls-required', true),
    s2sVerifyCerts: r.boolean('--s2s-verify-certs', false),
    s2sTimeout: r.seconds('--s2s-timeout', DEFAULTS.s2sTimeout),
    s2sCa: readCaFile(r, cwd),
    dnsServers: readDnsServers(r),
    wsPorts,
    boshPorts,
    httpPort,
    bindAddress: readBindAddress(r),
    trustedProxies: readTrustedProxies(r),
    c2sProxyProtocol: r.boolean('--c2s-proxy-protocol', DEFAULTS.c2sProxyProtocol),
    connectionLimitsExempt: readAddresses(r, '--connection-limits-exempt') ?? DEFAULTS.connectionLimitsExempt,
    boshInactivity: r.seconds('--bosh-inactivity', DEFAULTS.boshInactivity),
    tlsCert,
    tlsKey,
    tlsRequired: r.boolean('--tls-required', DEFAULTS.tlsRequired),
    registration: r.boolean('--registration', DEFAULTS.registration),
    // RFC 7677 §4: the iteration count SHOULD be at least 4096; above 10 million a login takes seconds.
    scramIterations: r.integer('--scram-iterations', DEFAULTS.scramIterations, 4096, 10_000_000),
    clusterMode,
    clusterHostname,
    clusterAddress,
    clusterPort,
    // Peers dial this port; it differs from --cluster-port only behind NAT or a forwarding proxy.
    clusterAdvertisePort: r.port('--cluster-advertise-port', clusterPort, false),
    clusterSecret,
    clusterHeartbeat,
    clusterNodeTimeout,
    clusterLinkHeartbeat,
    clusterLinkTimeout,
    clusterSyncTimeout,
    smClusterStrategyClass: readStrategy(r, cwd),
    components,
    minClusterNodes: r.integer('--min-cluster-nodes', DEFAULTS.minClusterNodes, 1),
    choreInterval: r.seconds('--chore-interval', DEFAULTS.choreInterval),
    drainGrace: r.string('--drain-grace') === '0' ? 0 : r.seconds('--drain-grace', DEFAULTS.drainGrace),
    workers,
    // 0 keeps archived messages forever.
    mamRetention: r.string('--mam-retention') === '0' ? 0 : r.seconds('--mam-retention', DEFAULTS.mamRetention),
    mamBacklogLimit: r.integer('--mam-backlog-limit', DEFAULTS.mamBacklogLimit, 10, 1_000_000),
    debug: readDebug(r),
    logLevel,
    logFile: logFileSetting === undefined ? undefined : path.resolve(cwd, logFileSetting),
    logJson: r.boolean('--log-json', DEFAULTS.logJson),
    logElasticsearch,
    logElasticsearchIndex,
    dataDir,
    controlSocket: readControlSocket(r, cwd, dataDir, warnings),
    limits: readLimits(r),
    raw: frozenMap(new Map([...settings].map(([k, s]) => [k, s.value]))),
    configFile,
    warnings,
  };
  return deepFreeze(config);
}

// ---------------------------------------------------------------------------------------------
// Command line

function parseArgv(argv: string[], cwd: string): { configFile?: string; overrides: Setting[] } {
  let configFile: string | undefined;
  const overrides: Setting[] = [];
  const fail = (key: string | undefined, message: string): never => {
    throw new ConfigError(message, key, COMMAND_LINE);
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) fail(undefined, `unexpected argument "${arg}"; keys are given as --key=value`);
    const eq = arg.indexOf('=');
    let key = eq > 0 ? arg.slice(0, eq) : arg;
    let value: string;
    if (eq > 0) {
      value = arg.slice(eq + 1);
    } else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) {
      value = argv[++i];
    } else if (KEYS[stripSuffix(key).key] === 'boolean') {
      value = 'true'; // a bare boolean flag: --cluster-mode
    } else {
      return fail(key, 'needs a value (--key=value or --key value)');
    }
    if (key === '--config') {
      if (configFile !== undefined) fail(key, 'given twice');
      if (value === '') fail(key, 'needs a file name');
      configFile = path.resolve(cwd, value);
      continue;
    }
    const stripped = stripSuffix(key);
    key = stripped.key;
    overrides.push({ key, value: value.trim(), source: COMMAND_LINE, type: stripped.type, baseDir: cwd });
  }
  return { configFile, overrides };
}

function stripSuffix(key: string): { key: string; type?: PropertyType } {
  const m = /^(.*)\[([BILSbils])\]$/.exec(key);
  return m ? { key: m[1], type: m[2].toUpperCase() as PropertyType } : { key };
}

// ---------------------------------------------------------------------------------------------
// Reading typed values

const BOOLEANS: Record<string, boolean> = { true: true, yes: true, '1': true, false: false, no: false, '0': false };

class Reader {
  constructor(private readonly settings: Map<string, Setting>) {}

  /** Throws a ConfigError naming `key` and, when it was given, where. */
  fail(key: string, message: string, at: string = key): never {
    const s = this.settings.get(at);
    throw new ConfigError(message, key, s?.source, s?.line);
  }

  keys(): IterableIterator<string> {
    return this.settings.keys();
  }

  setting(key: string): Setting | undefined {
    return this.settings.get(key);
  }

  /** The value, or undefined when absent or empty. */
  string(key: string): string | undefined {
    const v = this.settings.get(key)?.value.trim();
    return v === undefined || v === '' ? undefined : v;
  }

  list(key: string): string[] | undefined {
    const v = this.settings.get(key)?.value;
    if (v === undefined) return undefined;
    return v.split(',').map((x) => x.trim()).filter((x) => x !== '');
  }

  private required(key: string): string | undefined {
    const s = this.settings.get(key);
    if (s === undefined) return undefined;
    const v = s.value.trim();
    if (v === '') this.fail(key, `needs a value (${KIND_TEXT[KEYS[key]] ?? 'text'})`);
    return v;
  }

  boolean(key: string, def: boolean): boolean {
    const v = this.required(key);
    if (v === undefined) return def;
    const b = BOOLEANS[v.toLowerCase()];
    if (b === undefined) this.fail(key, `"${v}" is not a boolean (true/false, yes/no, 1/0)`);
    return b;
  }

  integer(key: string, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const v = this.required(key);
    if (v === undefined) return def;
    if (!/^[+-]?\d+$/.test(v) || !Number.isSafeInteger(Number(v))) this.fail(key, `"${v}" is not a whole number`);
    const n = Number(v);
    if (n < min) this.fail(key, `${n} is below the minimum ${min}`);
    if (n > max) this.fail(key, `${n} is above the maximum ${max}`);
    return n;
  }

  /** A positive number of seconds (fractions allowed). */
  seconds(key: string, def: number): number {
    const v = this.required(key);
    if (v === undefined) return def;
    if (!/^\+?(\d+(\.\d*)?|\.\d+)$/.test(v)) this.fail(key, `"${v}" is not a number of seconds`);
    const n = Number(v);
    if (!(n > 0) || !Number.isFinite(n)) this.fail(key, `${v} must be more than 0 seconds`);
    return n;
  }

  port(key: string, def: number, zeroDisables: boolean): number {
    const v = this.required(key);
    if (v === undefined) return def;
    return this.parsePort(key, v, zeroDisables);
  }

  /** A comma list of ports; `0` alone disables the listener (empty list). */
  ports(key: string, def: number[]): number[] {
    const v = this.required(key);
    if (v === undefined) return def;
    const items = v.split(',').map((x) => x.trim());
    if (items.length === 1 && items[0] === '0') return [];
    const ports: number[] = [];
    for (const item of items) {
      if (item === '0') this.fail(key, '0 disables the listener and cannot be combined with other ports');
      const p = this.parsePort(key, item, false);
      if (ports.includes(p)) this.fail(key, `port ${p} is listed twice`);
      ports.push(p);
    }
    return ports;
  }

  private parsePort(key: string, v: string, zeroAllowed: boolean): number {
    if (!/^\d+$/.test(v)) this.fail(key, `"${v}" is not a port number`);
    const n = Number(v);
    if (n > 65535) this.fail(key, `${n} is not a port number (1-65535)`);
    if (n === 0 && !zeroAllowed) this.fail(key, `0 is not a usable port here (1-65535)`);
    return n;
  }
}

// ---------------------------------------------------------------------------------------------
// Key checks

function checkKeys(settings: Map<string, Setting>, components: ComponentConfig[]): void {
  const prefixes = components.flatMap((c) => [`--${c.name}-`, `${c.name}/`]);
  for (const s of settings.values()) {
    const kind = KEYS[s.key];
    if (kind !== undefined) {
      checkTypeSuffix(s, kind);
      continue;
    }
    if (COMPONENT_KEY.test(s.key)) {
      checkTypeSuffix(s, 'string');
      continue;
    }
    // A component's own keys (--muc-history-size with a component named muc) stay in `raw`.
    if (prefixes.some((p) => s.key.startsWith(p) && s.key.length > p.length)) continue;
    if (s.key === '--config') throw new ConfigError('is only valid on the command line', s.key, s.source, s.line);
    throw new ConfigError(`unknown key${unknownKeyHint(s.key)}`, s.key, s.source, s.line);
  }
}

function checkTypeSuffix(s: Setting, kind: Kind): void {
  if (s.type === undefined || s.type === 'S') return;
  const fits = s.type === 'B' ? kind === 'boolean' : ['integer', 'seconds', 'port', 'ports'].includes(kind);
  if (!fits) {
    throw new ConfigError(`type suffix [${s.type}] does not fit: this key takes ${KIND_TEXT[kind]}`, s.key, s.source, s.line);
  }
}

function unknownKeyHint(key: string): string {
  const close = suggest(key);
  if (close !== undefined) return ` (did you mean ${close}?)`;
  const kind = /^--(muc|pubsub)-/.exec(key)?.[1];
  if (kind !== undefined) return ` (no component named ${kind} is configured: add --comp-name-N=${kind} and --comp-class-N=${kind})`;
  return '';
}

/** The known key closest to `key` by edit distance, when it is close enough to be a typo. */
function suggest(key: string): string | undefined {
  const candidates = [...Object.keys(KEYS), '--comp-name-1', '--comp-class-1', '--config'];
  const lower = key.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(lower, c);
    if (d < bestDistance) { best = c; bestDistance = d; }
  }
  const allowed = Math.min(4, Math.max(2, Math.floor(key.length / 5)));
  return bestDistance <= allowed ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

// ---------------------------------------------------------------------------------------------
// Individual keys

/** A DNS label: letters (any script), digits, hyphens inside, at most 63 characters. */
const LABEL = /^[\p{L}\p{N}](?:[\p{L}\p{N}-]{0,61}[\p{L}\p{N}])?$/u;

function isDomainName(s: string): boolean {
  if (s.length === 0 || s.length > 253) return false;
  return s.split('.').every((label) => LABEL.test(label));
}

/** Host names, IPv4 and IPv6 addresses, and names like `node1-2` for several nodes per machine. */
const HOST_OR_IP = /^[a-z0-9:](?:[a-z0-9._:-]{0,253}[a-z0-9.])?$/;

function readVirtHosts(r: Reader): string[] {
  const given = r.list('--virt-hosts');
  if (given === undefined) return [...DEFAULTS.virtHosts];
  const hosts: string[] = [];
  for (const raw of given) {
    const host = raw.toLowerCase();
    if (!isDomainName(host)) r.fail('--virt-hosts', `"${raw}" is not a valid domain name`);
    if (!hosts.includes(host)) hosts.push(host);
  }
  if (hosts.length === 0) r.fail('--virt-hosts', 'needs at least one domain');
  return hosts;
}

function readAdmins(r: Reader): string[] {
  const admins: string[] = [];
  for (const raw of r.list('--admins') ?? []) {
    const jid = raw.toLowerCase();
    const at = jid.indexOf('@');
    const local = jid.slice(0, at);
    const domain = jid.slice(at + 1);
    if (at <= 0 || /[@/\s"&'<>:]/.test(local) || !isDomainName(domain)) {
      r.fail('--admins', `"${raw}" is not a bare JID (local@domain)`);
    }
    if (!admins.includes(jid)) admins.push(jid);
  }
  return admins;
}

/** `--user-db` values: Tigase's names, and `postgresql` for those who spell it out. */
const USER_DB_NAMES: Record<string, 'sqlite' | 'mysql' | 'pgsql'> = { sqlite: 'sqlite', mysql: 'mysql', pgsql: 'pgsql', postgresql: 'pgsql' };
const URI_FORMS = {
  sqlite: 'sqlite:PATH',
  mysql: 'mysql://user:pass@host:port/db or jdbc:mysql://host:port/db?user=..&password=..',
  pgsql: 'postgresql://user:pass@host:port/db or jdbc:postgresql://host:port/db?user=..&password=..',
};

function readUserDb(r: Reader, cwd: string, dataDir: string): { userDb: 'sqlite' | 'mysql' | 'pgsql'; userDbUri: string } {
  const name = r.string('--user-db')?.toLowerCase();
  const db = name === undefined ? undefined : USER_DB_NAMES[name];
  if (name !== undefined && db === undefined) r.fail('--user-db', `"${name}" is not supported (sqlite, mysql or pgsql)`);
  let uri = r.string('--user-db-uri');
  if (uri === undefined) {
    if (db !== undefined && db !== 'sqlite') r.fail('--user-db-uri', `is required when --user-db is ${name} (${URI_FORMS[db]})`, '--user-db');
    return { userDb: 'sqlite', userDbUri: `sqlite:${path.join(dataDir, 'xmpp.sqlite')}` };
  }
  const scheme = databaseKindOf(uri);
  // Never echo the URI: it may hold a password.
  if (scheme === undefined) {
    r.fail('--user-db-uri', `unsupported URI; use ${URI_FORMS.sqlite}, ${URI_FORMS.mysql}, ${URI_FORMS.pgsql}`);
  }
  if (db !== undefined && db !== scheme) r.fail('--user-db-uri', `a ${scheme} URI does not match --user-db=${name}`);
  if (scheme === 'sqlite') {
    const file = uri.slice('sqlite:'.length);
    if (file === '') r.fail('--user-db-uri', 'sqlite: needs a file name (sqlite:var/xmpp.sqlite)');
    // ':memory:' and 'file:' URIs are passed through; plain paths resolve like every other path.
    if (!file.startsWith(':') && !file.startsWith('file:')) uri = `sqlite:${path.resolve(cwd, file)}`;
  } else {
    try {
      parseDatabaseUri(uri);
    } catch (err) {
      // parseDatabaseUri's messages already hide the password.
      r.fail('--user-db-uri', `${(err as Error).message} (${URI_FORMS[scheme!]})`);
    }
  }
  return { userDb: scheme ?? DEFAULTS.userDb, userDbUri: uri };
}

/** The Unix socket xmppctl talks to the running node on; relative paths are in --data-dir; 0 disables. */
function readControlSocket(r: Reader, cwd: string, dataDir: string, warnings: string[]): string | undefined {
  const given = r.string('--control-socket');
  const value = given ?? DEFAULTS.controlSocket;
  if (value === '0' || value === '') return undefined;
  const resolved = path.isAbsolute(value) ? value : path.resolve(value.includes('/') ? cwd : dataDir, value);
  // sockaddr_un holds 108 bytes with the terminating NUL.
  if (Buffer.byteLength(resolved) > 107) {
    const problem = `the path is longer than a Unix socket allows (107 bytes): ${resolved}`;
    if (given !== undefined) r.fail('--control-socket', problem);
    // The default under a deep --data-dir: the node runs, without xmppctl's way in.
    warnings.push(`--control-socket: ${problem}; xmppctl sessions, kick, stats, reload and drain are off until --control-socket names a shorter path`);
    return undefined;
  }
  return resolved;
}

function readBindAddress(r: Reader): string {
  const address = r.string('--bind-address') ?? DEFAULTS.bindAddress;
  if (net.isIP(address) === 0 && !isDomainName(address.toLowerCase())) {
    r.fail('--bind-address', `"${address}" is not an IP address or host name`);
  }
  return address;
}

/** A list of IP addresses; undefined when the key is not set. */
/**
 * --s2s-secret, else one derived from --cluster-secret (so every node of a cluster computes the
 * same dialback keys), else random for this process (a single node).
 */
function readS2sSecret(r: Reader, clusterSecret: string | undefined): string {
  const given = r.string('--s2s-secret');
  if (given !== undefined) {
    if (given.length < 16) r.fail('--s2s-secret', 'must be at least 16 characters');
    return given;
  }
  if (clusterSecret) return createHash('sha256').update(`xmpp-s2s-dialback\0${clusterSecret}`).digest('hex');
  return randomBytes(32).toString('hex');
}

/** --s2s-static-routes = example.org=10.0.0.5:5269, chat.example.net=[2001:db8::1]:5269 */
function readStaticRoutes(r: Reader): Map<string, { host: string; port: number; directTls: boolean }> {
  const routes = new Map<string, { host: string; port: number; directTls: boolean }>();
  for (const item of r.list('--s2s-static-routes') ?? []) {
    const match = /^([^=\s]+)\s*=\s*(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(item);
    const port = Number(match?.[4]);
    if (!match || port < 1 || port > 65535) r.fail('--s2s-static-routes', `"${item}" is not domain=host:port`);
    routes.set(match![1].toLowerCase(), { host: match![2] ?? match![3], port, directTls: false });
  }
  return routes;
}

/** --s2s-ca-file = PEM file of one or more CA certificates trusted for peers' certificates, besides the system's. */
function readCaFile(r: Reader, cwd: string): string[] {
  const file = r.string('--s2s-ca-file');
  if (file === undefined) return [];
  const full = path.resolve(cwd, file);
  let text = '';
  try {
    text = fs.readFileSync(full, 'utf8');
  } catch (err) {
    r.fail('--s2s-ca-file', `cannot read ${full}: ${(err as Error).message}`);
  }
  const certificates = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (certificates.length === 0) r.fail('--s2s-ca-file', `${full} holds no PEM certificate`);
  return certificates;
}

/** --dns-servers = 10.0.0.2, 127.0.0.1:5353, [::1]:53 */
function readDnsServers(r: Reader): string[] {
  const servers: string[] = [];
  for (const item of r.list('--dns-servers') ?? []) {
    const match = /^(?:\[([^\]]+)\]|([^:\s]+))(?::(\d{1,5}))?$/.exec(item) ?? /^([0-9a-f:]+)$/i.exec(item);
    const host = match ? (match[1] ?? match[2]) : '';
    const port = match?.[3] === undefined ? undefined : Number(match[3]);
    if (!match || net.isIP(host) === 0 || (port !== undefined && (port < 1 || port > 65535))) r.fail('--dns-servers', `"${item}" is not an IP address with an optional :port`);
    servers.push(port === undefined ? host : net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`);
  }
  return servers;
}

function readAddresses(r: Reader, key: string): string[] | undefined {
  const list = r.list(key);
  if (list === undefined) return undefined;
  for (const address of list) if (net.isIP(address) === 0) r.fail(key, `"${address}" is not an IP address`);
  return list.map((a) => a.toLowerCase());
}

function readTrustedProxies(r: Reader): string[] {
  const proxies: string[] = [];
  for (const address of r.list('--trusted-proxies') ?? []) {
    if (net.isIP(address) === 0) r.fail('--trusted-proxies', `"${address}" is not an IP address`);
    const normal = address.toLowerCase();
    if (!proxies.includes(normal)) proxies.push(normal);
  }
  return proxies;
}

function readTlsFiles(r: Reader, cwd: string): { tlsCert?: string; tlsKey?: string } {
  const cert = r.string('--tls-cert');
  const key = r.string('--tls-key');
  if (cert !== undefined && key === undefined) r.fail('--tls-key', 'is required with --tls-cert', '--tls-cert');
  if (key !== undefined && cert === undefined) r.fail('--tls-cert', 'is required with --tls-key', '--tls-key');
  if (cert === undefined || key === undefined) return {};
  const tlsCert = path.resolve(cwd, cert);
  const tlsKey = path.resolve(cwd, key);
  if (!fs.existsSync(tlsCert)) r.fail('--tls-cert', `${tlsCert} does not exist`);
  if (!fs.existsSync(tlsKey)) r.fail('--tls-key', `${tlsKey} does not exist`);
  return { tlsCert, tlsKey };
}

function isLoopback(host: string): boolean {
  if (['localhost', 'localhost.localdomain', 'ip6-localhost', 'ip6-loopback'].includes(host)) return true;
  if (host.endsWith('.localhost')) return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  if (net.isIPv6(host)) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(host);
    if (mapped) return mapped[1].startsWith('127.');
    return /^(0{0,4}:){2,7}0{0,3}1$/.test(host) || host === '::1';
  }
  return false;
}

function readClusterHostname(r: Reader, clusterMode: boolean, machineName: string): string {
  const given = r.string('--cluster-hostname');
  const hostname = (given ?? machineName).toLowerCase();
  const what = given === undefined ? `"${hostname}" (the default, from the machine's name)` : `"${hostname}"`;
  if (!HOST_OR_IP.test(hostname)) r.fail('--cluster-hostname', `${what} is not a host name or address`);
  if (clusterMode && isLoopback(hostname)) {
    // Every node registers under this name in cluster_nodes; "localhost" would name every node.
    r.fail('--cluster-hostname', `${what} is a loopback name: in cluster mode each node needs a unique name the other nodes can tell apart; set --cluster-hostname to this node's name (a loopback address is allowed in --cluster-address)`);
  }
  return hostname;
}

/** --workers: a whole number from 1 to 256, or `auto` for one per core (os.availableParallelism). */
function readWorkers(r: Reader): number {
  if (r.string('--workers')?.trim().toLowerCase() === 'auto') return os.availableParallelism();
  return r.integer('--workers', DEFAULTS.workers, 1, 256);
}

/** The ports the workers of one machine take one each: worker k uses base + k - 1. */
function workerRange(base: number, workers: number): number[] {
  return base === 0 ? [0] : Array.from({ length: workers }, (_, k) => base + k);
}

function checkPortClashes(
  r: Reader,
  p: { c2sPorts: number[]; c2sSslPorts: number[]; s2sPorts: number[]; s2sSslPorts: number[]; externalPorts: number[]; wsPorts: number[]; boshPorts: number[]; httpPort: number; clusterPort: number; clusterMode: boolean; workers: number },
): void {
  // Raw TCP listeners cannot share a port with anything; WebSocket, BOSH and the HTTP endpoints
  // may (they can be served by one HTTP server), so they are not checked against each other.
  const exclusive: [string, number[]][] = [
    ['--c2s-ports', p.c2sPorts],
    ['--c2s-ssl-ports', p.c2sSslPorts],
    ['--s2s-ports', p.s2sPorts],
    ['--s2s-ssl-ports', p.s2sSslPorts],
    ['--external-ports', p.externalPorts],
  ];
  // Workers link to each other as cluster nodes even when --cluster-mode is off.
  if (p.clusterMode || p.workers > 1) exclusive.push(['--cluster-port', workerRange(p.clusterPort, p.workers)]);
  const httpPorts = p.httpPort === 0 ? [] : workerRange(p.httpPort, p.workers);
  if (p.workers > 1) {
    // Each worker answers /health, /status and /metrics on a port of its own; the shared web
    // ports spread requests over the workers, so they cannot carry those.
    exclusive.push(['--http-port', httpPorts]);
  }
  const all: [string, number[]][] = [
    ...exclusive,
    ['--ws-ports', p.wsPorts],
    ['--bosh-ports', p.boshPorts],
    ...(p.workers > 1 ? [] : [['--http-port', httpPorts] as [string, number[]]]),
  ];
  for (let i = 0; i < exclusive.length; i++) {
    const [key, ports] = exclusive[i];
    for (let j = 0; j < all.length; j++) {
      if (j === i) continue;
      const clash = ports.find((port) => all[j][1].includes(port));
      if (clash !== undefined) {
        const later = r.setting(key) ? key : all[j][0];
        r.fail(later, `port ${clash} is also used by ${later === key ? all[j][0] : key}`);
      }
    }
  }
}

function readStrategy(r: Reader, cwd: string): string {
  const key = '--sm-cluster-strategy-class';
  const value = r.string(key);
  if (value === undefined) return DEFAULTS.smClusterStrategyClass;
  const alias = STRATEGY_ALIASES[value];
  if (alias !== undefined) return alias;
  const looksLikePath = /\.(c|m)?js$/.test(value) || /^(\.\.?\/|\/)/.test(value);
  if (!looksLikePath) {
    r.fail(key, `"${value}" is neither a known strategy (broadcast, online-users-caching) nor a path to a JS module (./my-strategy.js)`);
  }
  const base = r.setting(key)?.baseDir ?? cwd;
  const file = path.resolve(base, value);
  try {
    return require.resolve(file);
  } catch {
    return r.fail(key, `module ${file} does not exist`);
  }
}

function readComponents(r: Reader): ComponentConfig[] {
  const byIndex = new Map<number, { nameKey?: string; classKey?: string; secretKey?: string }>();
  for (const key of r.keys()) {
    const m = COMPONENT_KEY.exec(key);
    if (!m) continue;
    const index = Number(m[2]);
    const entry = byIndex.get(index) ?? {};
    if (m[1] === 'name') entry.nameKey = key;
    else if (m[1] === 'class') entry.classKey = key;
    else entry.secretKey = key;
    byIndex.set(index, entry);
  }
  const components: ComponentConfig[] = [];
  for (const index of [...byIndex.keys()].sort((a, b) => a - b)) {
    const { nameKey, classKey, secretKey } = byIndex.get(index)!;
    const className = classKey === undefined ? undefined : r.string(classKey);
    if (className === undefined) {
      r.fail(nameKey ?? `--comp-class-${index}`, `has no --comp-class-${index} (muc, pubsub or upload)`);
    }
    const kind = COMPONENT_ALIASES[className];
    if (kind === undefined) r.fail(classKey!, `unknown component class "${className}" (muc, pubsub, upload or their Tigase class names)`);
    const name = (nameKey === undefined ? undefined : r.string(nameKey)?.toLowerCase()) ?? kind;
    if (!/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(name)) {
      r.fail(nameKey!, `"${name}" is not a valid subdomain label (it is served at ${name}.<vhost>)`);
    }
    const clash = components.find((c) => c.name === name);
    if (clash) r.fail(nameKey ?? classKey!, `component name "${name}" is already used by --comp-name-${clash.index}`);
    const secret = secretKey === undefined ? undefined : r.string(secretKey);
    if (kind === 'external' && (secret === undefined || secret.length < 8)) {
      r.fail(secretKey ?? classKey!, `an external component needs --comp-secret-${index} (at least 8 characters), the secret it hands shakes with (XEP-0114)`);
    }
    if (kind !== 'external' && secret !== undefined) r.fail(secretKey!, `only external components have a secret`);
    components.push({ index, name, kind, ...(secret === undefined ? {} : { secret }) });
  }
  return components;
}

function readDebug(r: Reader): string[] {
  const categories: string[] = [];
  for (const raw of r.list('--debug') ?? []) {
    const c = raw.toLowerCase();
    if (!/^[a-z][a-z0-9_-]*$/.test(c)) r.fail('--debug', `"${raw}" is not a category name (e.g. cluster,server,xmpp,db)`);
    if (!categories.includes(c)) categories.push(c);
  }
  return categories;
}

function readElasticsearchUrl(r: Reader): string | undefined {
  const value = r.string('--log-elasticsearch');
  if (value === undefined) return undefined;
  let url: URL | undefined;
  try { url = new URL(value); } catch { url = undefined; }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    // The value may carry credentials (user:pass@): the message never shows them.
    const shown = url?.password ? value.replace(url.password, '***') : url ? value : value.replace(/:[^:@/]*@/, ':***@');
    r.fail('--log-elasticsearch', `"${shown}" is not an http(s) URL`);
  }
  return value.replace(/\/+$/, '');
}

/** --client-rate-limit: 0 turns it off; otherwise at least 1024 bytes a second (a stanza must get through). */
function readClientRateLimit(r: Reader): number {
  const value = r.integer('--client-rate-limit', DEFAULTS.limits.clientRateLimit, 0);
  if (value !== 0 && value < 1024) r.fail('--client-rate-limit', `${value} is below the minimum 1024`);
  return value;
}

/** --client-send-queue: 0 turns it off; otherwise at least 64 KiB, so a large roster or a page of history fits. */
function readClientSendQueue(r: Reader): number {
  const value = r.integer('--client-send-queue', DEFAULTS.limits.clientSendQueue, 0);
  if (value !== 0 && value < 65536) r.fail('--client-send-queue', `${value} is below the minimum 65536`);
  return value;
}

function readLimits(r: Reader): Limits {
  const d = DEFAULTS.limits;
  return {
    // RFC 6120 §13.12: a maximum stanza size below 10000 bytes breaks interoperability.
    // Above 64 MiB one stanza held in memory can starve the node; large data belongs in HTTP upload.
    maxStanzaSize: r.integer('--max-stanza-size', d.maxStanzaSize, 10000, 64 * 1024 * 1024),
    // At least 8: a PubSub publish with an Atom payload already nests 7 deep inside the stream.
    maxXmlDepth: r.integer('--max-xml-depth', d.maxXmlDepth, 8, 1000),
    // At least 8: a stream header alone carries up to 7 (to, from, id, version, xml:lang, xmlns, xmlns:stream).
    maxAttributes: r.integer('--max-attributes', d.maxAttributes, 8, 10000),
    streamOpenTimeout: r.seconds('--stream-open-timeout', d.streamOpenTimeout),
    authTimeout: r.seconds('--auth-timeout', d.authTimeout),
    maxAuthFailures: r.integer('--max-auth-failures', d.maxAuthFailures, 1),
    maxAccountAuthFailures: r.integer('--max-account-auth-failures', d.maxAccountAuthFailures, 1),
    authLockout: r.seconds('--auth-lockout', d.authLockout),
    maxAddressAuthFailures: r.integer('--max-address-auth-failures', d.maxAddressAuthFailures, 0),
    // 0 keeps no offline messages: every message to an offline user is bounced.
    offlineQueueLength: r.integer('--offline-queue-length', d.offlineQueueLength, 0),
    // At least 100: one failover batch of writes must fit.
    offlineWriteQueue: r.integer('--offline-write-queue', d.offlineWriteQueue, 100),
    offlineWriteTimeout: r.seconds('--offline-write-timeout', d.offlineWriteTimeout),
    // At least 3: the offline writer may hold two while logins and the registry need one.
    dbPoolSize: r.integer('--user-db-pool-size', d.dbPoolSize, 3, 1000),
    smResumptionTimeout: r.setting('--sm-resume-timeout') || !r.setting('--sm-resumption-timeout')
      ? r.seconds('--sm-resume-timeout', d.smResumptionTimeout)
      : r.seconds('--sm-resumption-timeout', d.smResumptionTimeout),
    smMaxUnacked: r.integer('--sm-max-unacked', d.smMaxUnacked, 10),
    fastTokenLifetime: r.seconds('--fast-token-lifetime', d.fastTokenLifetime),
    maxConnectionsPerIp: r.integer('--max-connections-per-ip', d.maxConnectionsPerIp, 0),
    connectionRatePerIp: r.integer('--connection-rate-per-ip', d.connectionRatePerIp, 0),
    maxUnauthenticatedPerIp: r.integer('--max-unauthenticated-per-ip', d.maxUnauthenticatedPerIp, 0),
    // 0 turns it off; otherwise at least 1 KiB a second, so a client can always log in.
    clientRateLimit: readClientRateLimit(r),
    clientSendQueue: readClientSendQueue(r),
  };
}

// ---------------------------------------------------------------------------------------------
// Freezing

/** A Map whose mutators throw, so a frozen Config cannot be changed through `raw` either. */
function frozenMap<K, V>(map: Map<K, V>): ReadonlyMap<K, V> {
  const refuse = (): never => { throw new TypeError('Config.raw is read-only'); };
  Object.defineProperties(map, {
    set: { value: refuse },
    delete: { value: refuse },
    clear: { value: refuse },
  });
  return Object.freeze(map);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as object)) deepFreeze(v);
  }
  return value;
}
