import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig } from '../../server/config/config';

type Test = tap.Test;

/** Writes etc/init.properties into a fresh folder and loads it with that folder as cwd. */
function load(t: Test, text: string, argv: string[] = [], extra: Record<string, string> = {}) {
  const dir = t.testdir({ etc: { 'init.properties': text }, ...extra });
  return loadConfig(['--config', 'etc/init.properties', ...argv], { cwd: dir, env: {}, hostname: 'node-a' });
}

function loadError(t: Test, text: string, argv: string[] = []): string {
  try {
    load(t, text, argv);
  } catch (err) {
    t.type(err, ConfigError);
    return (err as Error).message;
  }
  t.fail('expected a ConfigError');
  return '';
}

const cmdline = (argv: string[], hostname = 'node-a', env: NodeJS.ProcessEnv = {}) =>
  loadConfig(argv, { cwd: '/srv/xmpp', env, hostname });


t.test('without --config every key takes its documented default', async (t) => {
  const c = cmdline([]);
  t.same(c.virtHosts, ['localhost']);
  t.same(c.admins, []);
  t.equal(c.userDb, 'sqlite');
  t.equal(c.userDbUri, 'sqlite:/srv/xmpp/var/xmpp.sqlite');
  t.same(c.c2sPorts, [5222]);
  t.same(c.c2sSslPorts, [5223]);
  t.same(c.wsPorts, [5290]);
  t.same(c.boshPorts, [5280]);
  t.equal(c.httpPort, 8080);
  t.equal(c.bindAddress, '0.0.0.0');
  t.equal(c.tlsCert, undefined);
  t.equal(c.tlsKey, undefined);
  t.equal(c.tlsRequired, true);
  t.equal(c.registration, false);
  t.equal(c.scramIterations, 10000);
  t.equal(c.clusterMode, false);
  t.equal(c.clusterHostname, 'node-a');
  t.equal(c.clusterAddress, 'node-a');
  t.equal(c.clusterPort, 5777);
  t.equal(c.clusterSecret, undefined);
  t.equal(c.clusterHeartbeat, 5);
  t.equal(c.clusterNodeTimeout, 15);
  t.equal(c.smClusterStrategyClass, 'broadcast');
  t.same(c.components, []);
  t.equal(c.minClusterNodes, 1);
  t.same(c.debug, []);
  t.equal(c.logLevel, 'info');
  t.equal(c.logFile, undefined);
  t.equal(c.logJson, false);
  t.equal(c.logElasticsearch, undefined);
  t.equal(c.logElasticsearchIndex, 'xmpp-server');
  t.equal(c.dataDir, '/srv/xmpp/var');
  t.equal(c.controlSocket, '/srv/xmpp/var/xmppd.sock');
  t.equal(c.c2sProxyProtocol, false);
  t.same(c.connectionLimitsExempt, ['127.0.0.1', '::1']);
  t.same(c.limits, {
    maxStanzaSize: 262144, maxXmlDepth: 32, maxAttributes: 64, streamOpenTimeout: 10, authTimeout: 60,
    maxAuthFailures: 3, maxAccountAuthFailures: 10, authLockout: 300, offlineQueueLength: 1000,
    offlineWriteQueue: 10000, offlineWriteTimeout: 60, dbPoolSize: 10, smResumptionTimeout: 300, smMaxUnacked: 5000,
    fastTokenLifetime: 1_814_400, maxConnectionsPerIp: 500, connectionRatePerIp: 20, clientRateLimit: 65536,
    maxAddressAuthFailures: 30, maxUnauthenticatedPerIp: 100, clientSendQueue: 4_194_304,
  });
  t.equal(c.raw.size, 0);
  t.equal(c.configFile, undefined);
});

t.test('--control-socket: in --data-dir by default, a path of its own, 0 to disable; too long is refused or, by default, off', async (t) => {
  t.equal(cmdline(['--control-socket=ctl.sock']).controlSocket, '/srv/xmpp/var/ctl.sock', 'a bare name lives in --data-dir');
  t.equal(cmdline(['--control-socket=run/xmpp.sock']).controlSocket, '/srv/xmpp/run/xmpp.sock', 'a relative path, from the working directory');
  t.equal(cmdline(['--control-socket=0']).controlSocket, undefined);
  const deep = `/srv/${'d'.repeat(110)}`;
  t.throws(() => cmdline([`--control-socket=${deep}/x.sock`]), { message: /--control-socket: the path is longer than a Unix socket allows/ });
  const defaulted = cmdline([`--data-dir=${deep}`]);
  t.equal(defaulted.controlSocket, undefined, 'the default under a deep --data-dir is off');
  t.match(defaulted.warnings, [/--control-socket: the path is longer .*xmppctl sessions, kick, stats, reload and drain are off/]);
});

t.test('--c2s-proxy-protocol, --connection-limits-exempt and the per-address limits', async (t) => {
  const c = cmdline(['--c2s-proxy-protocol=true', '--trusted-proxies=10.0.0.5', '--connection-limits-exempt=10.0.0.9,::1', '--max-connections-per-ip=0', '--connection-rate-per-ip=5']);
  t.equal(c.c2sProxyProtocol, true);
  t.same(c.connectionLimitsExempt, ['10.0.0.9', '::1']);
  t.equal(c.limits.maxConnectionsPerIp, 0, '0 turns the limit off');
  t.equal(c.limits.connectionRatePerIp, 5);
  t.throws(() => cmdline(['--connection-limits-exempt=example.com']), { message: /--connection-limits-exempt: "example.com" is not an IP address/ });
  t.throws(() => cmdline(['--connection-rate-per-ip=-1']), { message: /--connection-rate-per-ip: -1 is below the minimum 0/ });
});

t.test('the cluster hostname defaults to the machine name, lower-cased', async (t) => {
  t.equal(cmdline([], 'Build-Box').clusterHostname, 'build-box');
  const real = loadConfig([], { env: {} });
  t.ok(real.clusterHostname.length > 0);
});

t.test('the shipped etc/init.properties loads, matches the defaults and turns on MUC and PubSub', async (t) => {
  const repo = path.resolve(__dirname, '../..');
  const shipped = loadConfig(['--config', 'etc/init.properties'], { cwd: repo, env: {}, hostname: 'node-a' });
  const defaults = loadConfig([], { cwd: repo, env: {}, hostname: 'node-a' });
  // Without a cluster secret the dialback secret is random per start.
  const comparable = (c: typeof shipped) => ({ ...c, raw: undefined, configFile: undefined, warnings: undefined, components: undefined, s2sSecret: undefined });
  t.same(comparable(shipped), comparable(defaults));
  t.same(shipped.components.map((c) => [c.name, c.kind]), [['muc', 'muc'], ['pubsub', 'pubsub'], ['upload', 'upload']]);
  t.equal(shipped.configFile, path.join(repo, 'etc/init.properties'));
  t.same(shipped.warnings, []);
});

t.test('server-to-server keys: ports, TLS, the dialback secret shared by a cluster, static routes', async (t) => {
  const defaults = load(t, '');
  t.same([defaults.s2sPorts, defaults.s2sSslPorts], [[5269], [5270]]);
  t.same([defaults.s2sTlsRequired, defaults.s2sVerifyCerts, defaults.s2sTimeout], [true, false, 30]);
  t.equal(defaults.s2sStaticRoutes.size, 0);
  t.not(load(t, '').s2sSecret, defaults.s2sSecret, 'a single node without a cluster secret makes one per start');
  const clustered = '--cluster-secret = 0123456789abcdef0123';
  t.equal(load(t, clustered).s2sSecret, load(t, clustered).s2sSecret, 'every node of a cluster derives the same one');
  t.not(load(t, clustered).s2sSecret, '0123456789abcdef0123', 'not the cluster secret itself');
  t.equal(load(t, '--s2s-secret = a-dialback-secret-of-ours').s2sSecret, 'a-dialback-secret-of-ours');
  t.match(loadError(t, '--s2s-secret = short'), /--s2s-secret: must be at least 16 characters/);
  const routed = load(t, '--s2s-static-routes = Example.org=10.0.0.5:5269, chat.example.net=[2001:db8::1]:5270\n--s2s-ports = 0\n--s2s-ssl-ports = 0');
  t.same([...routed.s2sStaticRoutes], [
    ['example.org', { host: '10.0.0.5', port: 5269, directTls: false }],
    ['chat.example.net', { host: '2001:db8::1', port: 5270, directTls: false }],
  ]);
  t.same([routed.s2sPorts, routed.s2sSslPorts], [[], []], '0 turns the listeners off');
  t.match(loadError(t, '--s2s-static-routes = example.org'), /--s2s-static-routes: "example.org" is not domain=host:port/);
  t.match(loadError(t, '--s2s-ports = 5222'), /port 5222 is also used by --c2s-ports|--c2s-ports: port 5222/);
  t.same([defaults.s2sCa, defaults.dnsServers], [[], []], 'the system\'s CAs and name servers by default');
  const pem = (n: number) => `-----BEGIN CERTIFICATE-----\nMIIB${n}\n-----END CERTIFICATE-----`;
  const withCa = load(t, '--s2s-ca-file = ca.pem', [], { 'ca.pem': `# two CAs\n${pem(1)}\n${pem(2)}\n` });
  t.same(withCa.s2sCa, [pem(1), pem(2)], 'every certificate of --s2s-ca-file');
  t.match(loadError(t, '--s2s-ca-file = etc/none.pem'), /--s2s-ca-file: cannot read .*none\.pem/);
  t.match(loadError(t, '--s2s-ca-file = etc/init.properties'), /--s2s-ca-file: .* holds no PEM certificate/);
  t.same(load(t, '--dns-servers = 10.0.0.2, 127.0.0.1:5353, [::1]:53, 2001:db8::53').dnsServers, ['10.0.0.2', '127.0.0.1:5353', '[::1]:53', '2001:db8::53']);
  t.match(loadError(t, '--dns-servers = ns.example.org'), /--dns-servers: "ns.example.org" is not an IP address/);
  t.match(loadError(t, '--dns-servers = 10.0.0.2:99999'), /--dns-servers: "10.0.0.2:99999" is not an IP address/);
});

t.test('external components (XEP-0114): class, secret, port', async (t) => {
  const c = load(t, '--comp-name-1 = bridge\n--comp-class-1 = external\n--comp-secret-1 = a-long-secret');
  t.same(c.components, [{ index: 1, name: 'bridge', kind: 'external', secret: 'a-long-secret' }]);
  t.same(c.externalPorts, [5347]);
  t.match(loadError(t, '--comp-name-1 = bridge\n--comp-class-1 = external'), /needs --comp-secret-1/);
  t.match(loadError(t, '--comp-name-1 = bridge\n--comp-class-1 = external\n--comp-secret-1 = short'), /at least 8 characters/);
  t.match(loadError(t, '--comp-class-1 = muc\n--comp-secret-1 = a-long-secret'), /only external components have a secret/);
  t.same(load(t, '--external-ports = 0').externalPorts, []);
});

t.test('file keys fill the matching config fields', async (t) => {
  const c = load(t, [
    '--virt-hosts = Example.COM , chat.example.com,example.com',
    '--admins = Admin@Example.com, ops@chat.example.com',
    '--c2s-ports = 5222, 15222',
    '--c2s-ssl-ports = 0',
    '--ws-ports = 0',
    '--bosh-ports = 5281',
    '--http-port = 0',
    '--bind-address = ::',
    '--registration = yes',
    '--tls-required = no',
    '--scram-iterations = 4096',
    '--min-cluster-nodes = 3',
    '--debug = Cluster, db,cluster',
    '--log-level = DEBUG',
    '--log-file = var/log/xmpp.log',
    '--log-json = 1',
    '--log-elasticsearch = http://elastic:9200/',
    '--log-elasticsearch-index = xmpp-logs',
    '--data-dir = /var/lib/xmpp',
  ].join('\n'));
  t.same(c.virtHosts, ['example.com', 'chat.example.com']);
  t.same(c.admins, ['admin@example.com', 'ops@chat.example.com']);
  t.same(c.c2sPorts, [5222, 15222]);
  t.same(c.c2sSslPorts, []);
  t.same(c.wsPorts, []);
  t.same(c.boshPorts, [5281]);
  t.equal(c.httpPort, 0);
  t.equal(c.bindAddress, '::');
  t.equal(c.registration, true);
  t.equal(c.tlsRequired, false);
  t.equal(c.scramIterations, 4096);
  t.equal(c.minClusterNodes, 3);
  t.same(c.debug, ['cluster', 'db']);
  t.equal(c.logLevel, 'debug');
  t.ok(path.isAbsolute(c.logFile!) && c.logFile!.endsWith(path.join('var', 'log', 'xmpp.log')));
  t.equal(c.logJson, true);
  t.equal(c.logElasticsearch, 'http://elastic:9200');
  t.equal(c.logElasticsearchIndex, 'xmpp-logs');
  t.equal(c.dataDir, '/var/lib/xmpp');
  t.equal(c.userDbUri, 'sqlite:/var/lib/xmpp/xmpp.sqlite');
});

t.test('the command line overrides the file, in both --key=value and --key value forms', async (t) => {
  const c = load(t, '--c2s-ports = 5222\n--log-level = warn\n--registration = false', [
    '--c2s-ports=6222', '--log-level', 'error', '--registration',
  ]);
  t.same(c.c2sPorts, [6222]);
  t.equal(c.logLevel, 'error');
  t.equal(c.registration, true, 'a bare boolean flag means true');
  t.equal(c.raw.get('--c2s-ports'), '6222');
});

t.test('--config=FILE works like --config FILE and relative paths use cwd', async (t) => {
  const dir = t.testdir({ 'my.properties': '--virt-hosts = a.example' });
  const c = loadConfig(['--config=my.properties'], { cwd: dir, env: {}, hostname: 'n' });
  t.same(c.virtHosts, ['a.example']);
  t.equal(c.configFile, path.join(dir, 'my.properties'));
});

t.test('a missing config file is a ConfigError naming --config', async (t) => {
  t.throws(() => cmdline(['--config', 'nope.properties']), { name: 'ConfigError', message: /--config: cannot read config file \/srv\/xmpp\/nope\.properties/ });
});

t.test('later keys in the file override earlier ones, with a warning', async (t) => {
  const c = load(t, '--log-level = debug\n\n--log-level = warn');
  t.equal(c.logLevel, 'warn');
  // tap's fixture folders are too deep for the default control socket, which warns too.
  t.same((c.warnings ?? []).filter((w) => !w.startsWith('--control-socket')), ['etc/init.properties:3: --log-level overrides the value on line 1']);
});

t.test('a bad port names file, line and key', async (t) => {
  const msg = loadError(t, '# comment\n\n\n\n\n\n--c2s-ports = 5222,52x22');
  t.equal(msg, 'etc/init.properties:7: --c2s-ports: "52x22" is not a port number');
});

t.test('ports above 65535, negative, or 0 mixed with others are refused', async (t) => {
  t.match(loadError(t, '--ws-ports = 70000'), /^etc\/init\.properties:1: --ws-ports: 70000 is not a port number/);
  t.match(loadError(t, '--ws-ports = -1'), /--ws-ports: "-1" is not a port number/);
  t.match(loadError(t, '--ws-ports = 5290,0'), /--ws-ports: 0 disables the listener and cannot be combined/);
  t.match(loadError(t, '--ws-ports = 5290,5290'), /--ws-ports: port 5290 is listed twice/);
  t.match(loadError(t, '--ws-ports ='), /--ws-ports: needs a value/);
  t.match(loadError(t, '--http-port = 8080,8081'), /--http-port: "8080,8081" is not a port number/);
  t.match(loadError(t, '--cluster-port = 0'), /--cluster-port: 0 is not a usable port/);
});

t.test('two raw TCP listeners on one port are refused, naming the key that was set', async (t) => {
  t.match(loadError(t, '--ws-ports = 5222'), /^etc\/init\.properties:1: --ws-ports: port 5222 is also used by --c2s-ports/);
  t.match(loadError(t, '--c2s-ssl-ports = 5222'), /--c2s-ssl-ports: port 5222 is also used by --c2s-ports/);
  t.match(loadError(t, '--cluster-mode = true\n--http-port = 5777'), /--http-port: port 5777 is also used by --cluster-port/);
  t.same(load(t, '--http-port = 5280').boshPorts, [5280], 'BOSH and HTTP endpoints may share an HTTP server');
});

t.test('an error on the command line says so', async (t) => {
  t.throws(() => cmdline(['--c2s-ports=x']), { message: 'command line: --c2s-ports: "x" is not a port number' });
  t.throws(() => cmdline(['virt-hosts=a']), { message: /^command line: unexpected argument "virt-hosts=a"/ });
  t.throws(() => cmdline(['--virt-hosts']), { message: 'command line: --virt-hosts: needs a value (--key=value or --key value)' });
  t.throws(() => cmdline(['--config']), { message: /^command line: --config: needs a value/ });
});

t.test('an unknown key stops start-up with its line and a suggestion', async (t) => {
  t.equal(loadError(t, '--virt-hosts = a.example\n--c2s-port = 5222'),
    'etc/init.properties:2: --c2s-port: unknown key (did you mean --c2s-ports?)');
  t.equal(loadError(t, '--cluster_mode = true'),
    'etc/init.properties:1: --cluster_mode: unknown key (did you mean --cluster-mode?)');
  t.equal(loadError(t, 'virt-hosts = a.example'),
    'etc/init.properties:1: virt-hosts: unknown key (did you mean --virt-hosts?)');
  t.equal(loadError(t, '--completely-made-up-setting = 1'),
    'etc/init.properties:1: --completely-made-up-setting: unknown key');
  t.throws(() => cmdline(['--virt-host=a']), { message: 'command line: --virt-host: unknown key (did you mean --virt-hosts?)' });
});

t.test('--config inside the file is refused', async (t) => {
  t.equal(loadError(t, '--config = other.properties'), 'etc/init.properties:1: --config: is only valid on the command line');
});

t.test('booleans accept true/false/yes/no/1/0 in any case and refuse anything else', async (t) => {
  for (const [text, value] of [['TRUE', true], ['Yes', true], ['1', true], ['false', false], ['NO', false], ['0', false]] as const) {
    t.equal(load(t, `--registration = ${text}`).registration, value, text);
  }
  t.equal(loadError(t, '--registration = maybe'), 'etc/init.properties:1: --registration: "maybe" is not a boolean (true/false, yes/no, 1/0)');
});

t.test('Tigase type suffixes are accepted when they fit the key, refused when not', async (t) => {
  const c = load(t, '--cluster-mode[B] = false\n--c2s-ports[i] = 5222,5225\n--virt-hosts[s] = a.example\n--max-xml-depth[I] = 20\n--auth-lockout[L] = 60');
  t.same(c.c2sPorts, [5222, 5225]);
  t.same(c.virtHosts, ['a.example']);
  t.equal(c.limits.maxXmlDepth, 20);
  t.equal(loadError(t, '--virt-hosts[B] = a.example'), 'etc/init.properties:1: --virt-hosts: type suffix [B] does not fit: this key takes a comma list');
  t.match(loadError(t, '--registration[I] = 1'), /--registration: type suffix \[I\] does not fit: this key takes true or false/);
  t.same(cmdline(['--c2s-ports[i]=5000']).c2sPorts, [5000]);
});

t.test('config-type is accepted and ignored with a warning', async (t) => {
  const c = load(t, 'config-type = --gen-config-def\n--virt-hosts = a.example');
  t.same(c.virtHosts, ['a.example']);
  t.same((c.warnings ?? []).filter((w) => !w.startsWith('--control-socket')), ['config-type is a Tigase key and is ignored']);
});

t.test('virtual hosts must be domain names', async (t) => {
  t.equal(loadError(t, '--virt-hosts = good.example, bad_host'), 'etc/init.properties:1: --virt-hosts: "bad_host" is not a valid domain name');
  t.match(loadError(t, '--virt-hosts = -a.example'), /"-a\.example" is not a valid domain name/);
  t.match(loadError(t, '--virt-hosts = ,'), /--virt-hosts: needs at least one domain/);
  t.same(load(t, '--virt-hosts = bücher.example').virtHosts, ['bücher.example']);
});

t.test('admins must be bare JIDs', async (t) => {
  t.match(loadError(t, '--admins = admin'), /--admins: "admin" is not a bare JID/);
  t.match(loadError(t, '--admins = admin@example.com/phone'), /--admins: "admin@example\.com\/phone" is not a bare JID/);
  t.match(loadError(t, '--admins = @example.com'), /is not a bare JID/);
  t.same(load(t, '--admins =').admins, []);
});

t.test('--user-db and --user-db-uri must agree', async (t) => {
  const mysql = load(t, '--user-db = mysql\n--user-db-uri = mysql://u:secret@db:3306/xmpp');
  t.equal(mysql.userDb, 'mysql');
  t.equal(mysql.userDbUri, 'mysql://u:secret@db:3306/xmpp');
  const jdbc = load(t, '--user-db-uri = jdbc:mysql://db:3306/tigasedb?user=tigase&password=x');
  t.equal(jdbc.userDb, 'mysql', 'the database is inferred from the URI');
  t.equal(jdbc.userDbUri, 'jdbc:mysql://db:3306/tigasedb?user=tigase&password=x');

  const pgsql = load(t, '--user-db = pgsql\n--user-db-uri = postgresql://u:secret@db/xmpp');
  t.equal(pgsql.userDb, 'pgsql');
  t.equal(load(t, '--user-db-uri = jdbc:postgresql://db/tigasedb?user=tigase&password=x').userDb, 'pgsql', 'inferred from a jdbc:postgresql URI');
  t.equal(load(t, '--user-db = postgresql\n--user-db-uri = postgres://db/xmpp').userDb, 'pgsql', '"postgresql" is another name for pgsql');

  t.equal(
    loadError(t, '--user-db = mysql'),
    'etc/init.properties:1: --user-db-uri: is required when --user-db is mysql (mysql://user:pass@host:port/db or jdbc:mysql://host:port/db?user=..&password=..)',
  );
  t.match(loadError(t, '--user-db = pgsql'), /--user-db-uri: is required when --user-db is pgsql \(postgresql:\/\/user:pass@host:port\/db/);
  const mismatch = loadError(t, '--user-db = sqlite\n--user-db-uri = mysql://u:secret@db/xmpp');
  t.equal(mismatch, 'etc/init.properties:2: --user-db-uri: a mysql URI does not match --user-db=sqlite');
  t.match(loadError(t, '--user-db = mysql\n--user-db-uri = sqlite:x.db'), /a sqlite URI does not match --user-db=mysql/);
  const bad = loadError(t, '--user-db-uri = oracle://u:secret@db/xmpp');
  t.match(bad, /--user-db-uri: unsupported URI/);
  t.notMatch(bad, /secret/, 'the URI, which may hold a password, is not echoed');
  const broken = loadError(t, '--user-db-uri = postgresql://u:secret@db/xmpp?sslmode=prefer');
  t.match(broken, /--user-db-uri: .*sslmode=prefer; use disable, require, verify-full/, 'a malformed URI is refused at load, saying why');
  t.notMatch(broken, /secret/);
  t.match(loadError(t, '--user-db-uri = mysql://u:secret@db'), /names no database/);
  t.match(loadError(t, '--user-db = derby'), /--user-db: "derby" is not supported \(sqlite, mysql or pgsql\)/);
});

t.test('a relative sqlite path resolves against cwd; :memory: is kept', async (t) => {
  t.equal(cmdline(['--user-db-uri=sqlite:data/x.db']).userDbUri, 'sqlite:/srv/xmpp/data/x.db');
  t.equal(cmdline(['--user-db-uri=sqlite::memory:']).userDbUri, 'sqlite::memory:');
  t.throws(() => cmdline(['--user-db-uri=sqlite:']), { message: /needs a file name/ });
});

t.test('in cluster mode a loopback cluster hostname is refused, with the reason', async (t) => {
  for (const name of ['localhost', 'LOCALHOST.localdomain', '127.0.0.1', '127.3.4.5', '::1']) {
    const msg = loadError(t, `--cluster-mode = true\n--cluster-hostname = ${name}`);
    t.match(msg, /^etc\/init\.properties:2: --cluster-hostname: ".*" is a loopback name: in cluster mode each node needs a unique name the other nodes can tell apart/, name);
  }
});

t.test('the default cluster hostname is refused in cluster mode when the machine is called localhost', async (t) => {
  t.throws(() => cmdline(['--cluster-mode'], 'localhost'), {
    message: /^--cluster-hostname: "localhost" \(the default, from the machine's name\) is a loopback name/,
  });
});

t.test('loopback names are fine outside cluster mode and in --cluster-address', async (t) => {
  t.equal(cmdline([], 'localhost').clusterHostname, 'localhost');
  const c = load(t, '--cluster-mode = true\n--cluster-hostname = node1\n--cluster-address = 127.0.0.2');
  t.equal(c.clusterHostname, 'node1');
  t.equal(c.clusterAddress, '127.0.0.2');
});

t.test('cluster address defaults to the cluster hostname', async (t) => {
  t.equal(load(t, '--cluster-hostname = Node7.example.com').clusterAddress, 'node7.example.com');
});

t.test('cluster heartbeat and timeout: timeout defaults to three heartbeats and must exceed one', async (t) => {
  const c = load(t, '--cluster-heartbeat = 0.5');
  t.equal(c.clusterHeartbeat, 0.5);
  t.equal(c.clusterNodeTimeout, 1.5);
  t.equal(load(t, '--cluster-heartbeat = 2\n--cluster-node-timeout = 10').clusterNodeTimeout, 10);
  t.match(loadError(t, '--cluster-heartbeat = 5\n--cluster-node-timeout = 5'), /^etc\/init\.properties:2: --cluster-node-timeout: 5 must be longer than --cluster-heartbeat \(5\)/);
  t.match(loadError(t, '--cluster-heartbeat = 0'), /--cluster-heartbeat: 0 must be more than 0 seconds/);
  t.match(loadError(t, '--cluster-heartbeat = -1'), /--cluster-heartbeat: "-1" is not a number of seconds/);
});

t.test('the cluster secret comes from the file or the XMPP_CLUSTER_SECRET variable', async (t) => {
  t.equal(cmdline([], 'n', { XMPP_CLUSTER_SECRET: 'from-the-environment-0123' }).clusterSecret, 'from-the-environment-0123');
  t.equal(cmdline(['--cluster-secret=given-on-the-line-0123'], 'n', { XMPP_CLUSTER_SECRET: 'env' }).clusterSecret, 'given-on-the-line-0123');
  t.match(cmdline(['--cluster-secret=short']).warnings, [/shorter than 16 characters/]);
});

t.test('strategy aliases map to broadcast and online-users-caching', async (t) => {
  const cases: [string, string][] = [
    ['broadcast', 'broadcast'],
    ['tigase.cluster.strategy.DefaultClusteringStrategy', 'broadcast'],
    ['online-users-caching', 'online-users-caching'],
    ['tigase.cluster.strategy.OnlineUsersCachingStrategy', 'online-users-caching'],
    ['tigase.server.cluster.strategy.OnlineUsersCachingStrategy', 'online-users-caching'],
  ];
  for (const [given, expected] of cases) {
    t.equal(load(t, `--sm-cluster-strategy-class = ${given}`).smClusterStrategyClass, expected, given);
  }
});

t.test('a custom strategy module is resolved to an absolute path', async (t) => {
  const dir = t.testdir({ etc: { 'init.properties': '--sm-cluster-strategy-class = ./strategies/mine.js', strategies: { 'mine.js': 'module.exports = {}' } }, 'top.cjs': '' });
  const c = loadConfig(['--config', 'etc/init.properties'], { cwd: dir, env: {}, hostname: 'n' });
  t.equal(c.smClusterStrategyClass, path.join(dir, 'etc', 'strategies', 'mine.js'));
  const fromLine = loadConfig(['--sm-cluster-strategy-class=top.cjs'], { cwd: dir, env: {}, hostname: 'n' });
  t.equal(fromLine.smClusterStrategyClass, path.join(dir, 'top.cjs'), 'a command-line path resolves against cwd');
});

t.test('a strategy that is neither an alias nor an existing JS module is refused', async (t) => {
  t.match(loadError(t, '--sm-cluster-strategy-class = tigase.cluster.strategy.Unknown'), /^etc\/init\.properties:1: --sm-cluster-strategy-class: "tigase\.cluster\.strategy\.Unknown" is neither a known strategy/);
  t.match(loadError(t, '--sm-cluster-strategy-class = ./missing.js'), /--sm-cluster-strategy-class: module .*missing\.js does not exist/);
});

t.test('components: Tigase class names are aliases, names default to the kind, order follows N', async (t) => {
  const c = load(t, [
    '--comp-class-10 = tigase.pubsub.cluster.PubSubComponentClustered',
    '--comp-name-2 = Conference',
    '--comp-class-2 = tigase.muc.cluster.MUCComponentClustered',
    '--comp-class-3 = tigase.muc.MUCComponent',
    '--comp-name-3 = rooms',
  ].join('\n'));
  t.same(c.components, [
    { index: 2, name: 'conference', kind: 'muc' },
    { index: 3, name: 'rooms', kind: 'muc' },
    { index: 10, name: 'pubsub', kind: 'pubsub' },
  ]);
  t.same(load(t, '--comp-class-1 = muc\n--comp-class-2 = tigase.pubsub.PubSubComponent').components.map((x) => x.name), ['muc', 'pubsub']);
});

t.test('component errors: name without class, unknown class, duplicate or bad name', async (t) => {
  t.equal(loadError(t, '--comp-name-1 = muc'), 'etc/init.properties:1: --comp-name-1: has no --comp-class-1 (muc, pubsub or upload)');
  t.equal(loadError(t, '--comp-class-1 = tigase.server.xmppsession.SessionManager'),
    'etc/init.properties:1: --comp-class-1: unknown component class "tigase.server.xmppsession.SessionManager" (muc, pubsub, upload or their Tigase class names)');
  t.match(loadError(t, '--comp-class-1 = muc\n--comp-class-2 = muc'), /^etc\/init\.properties:2: --comp-class-2: component name "muc" is already used by --comp-name-1/);
  t.match(loadError(t, '--comp-name-1 = my_rooms\n--comp-class-1 = muc'), /--comp-name-1: "my_rooms" is not a valid subdomain label/);
});

t.test('keys of a configured component are accepted and left in raw', async (t) => {
  const c = load(t, '--comp-name-1 = muc\n--comp-class-1 = muc\n--muc-history-size = 20\nmuc/search-history[B] = false');
  t.equal(c.raw.get('--muc-history-size'), '20');
  t.equal(c.raw.get('muc/search-history'), 'false');
  const renamed = load(t, '--comp-name-1 = rooms\n--comp-class-1 = muc\n--rooms-history-size = 5');
  t.equal(renamed.raw.get('--rooms-history-size'), '5');
});

t.test('keys of a component that is not configured are unknown', async (t) => {
  t.equal(loadError(t, '--muc-history-size = 20'),
    'etc/init.properties:1: --muc-history-size: unknown key (no component named muc is configured: add --comp-name-N=muc and --comp-class-N=muc)');
  t.match(loadError(t, '--comp-class-1 = pubsub\n--muc-history-size = 20'), /^etc\/init\.properties:2: --muc-history-size: unknown key/);
});

t.test('--debug takes lowercase category words and --log-level one of the winston levels', async (t) => {
  t.same(load(t, '--debug = server, XMPP').debug, ['server', 'xmpp']);
  t.match(loadError(t, '--debug = db, two words'), /--debug: "two words" is not a category name/);
  for (const level of ['error', 'warn', 'info', 'verbose', 'debug', 'silly']) t.equal(load(t, `--log-level = ${level}`).logLevel, level);
  t.equal(loadError(t, '--log-level = loud'), 'etc/init.properties:1: --log-level: "loud" is not one of error, warn, info, verbose, debug, silly');
});

t.test('Elasticsearch URL and index are checked', async (t) => {
  t.match(loadError(t, '--log-elasticsearch = elastic:9200'), /--log-elasticsearch: "elastic:9200" is not an http\(s\) URL/);
  const withPassword = loadError(t, '--log-elasticsearch = ftp://ops:s3cret@elastic:9200');
  t.match(withPassword, /--log-elasticsearch: "ftp:\/\/ops:\*\*\*@elastic:9200" is not an http\(s\) URL/);
  t.notMatch(withPassword, /s3cret/, 'the password is not shown');
  t.match(loadError(t, '--log-elasticsearch-index = Bad Index'), /--log-elasticsearch-index: "Bad Index" is not a valid Elasticsearch index name/);
});

t.test('SCRAM iterations below 4096 are refused', async (t) => {
  t.equal(loadError(t, '--scram-iterations = 1000'), 'etc/init.properties:1: --scram-iterations: 1000 is below the minimum 4096');
  t.equal(load(t, '--scram-iterations = 100000').scramIterations, 100000);
});

t.test('limits take their keys and refuse nonsense', async (t) => {
  const c = load(t, [
    '--max-stanza-size = 65536', '--max-xml-depth = 16', '--max-attributes = 32', '--stream-open-timeout = 5',
    '--auth-timeout = 30', '--max-auth-failures = 5', '--max-account-auth-failures = 20', '--auth-lockout = 600',
    '--offline-queue-length = 0', '--offline-write-queue = 500', '--offline-write-timeout = 5', '--user-db-pool-size = 4',
    '--sm-resume-timeout = 60', '--sm-max-unacked = 200', '--fast-token-lifetime = 86400',
    '--max-connections-per-ip = 50', '--connection-rate-per-ip = 3', '--client-rate-limit = 4096',
    '--max-address-auth-failures = 0', '--max-unauthenticated-per-ip = 7', '--client-send-queue = 1048576',
  ].join('\n'));
  t.same(c.limits, {
    maxStanzaSize: 65536, maxXmlDepth: 16, maxAttributes: 32, streamOpenTimeout: 5, authTimeout: 30,
    maxAuthFailures: 5, maxAccountAuthFailures: 20, authLockout: 600, offlineQueueLength: 0,
    offlineWriteQueue: 500, offlineWriteTimeout: 5, dbPoolSize: 4, smResumptionTimeout: 60, smMaxUnacked: 200, fastTokenLifetime: 86400,
    maxConnectionsPerIp: 50, connectionRatePerIp: 3, clientRateLimit: 4096, maxAddressAuthFailures: 0, maxUnauthenticatedPerIp: 7,
    clientSendQueue: 1048576,
  });
  t.equal(load(t, '').limits.clientSendQueue, 4194304, '4 MiB may wait unread for a client by default');
  t.equal(load(t, '--client-send-queue = 0').limits.clientSendQueue, 0, '0 turns it off');
  t.match(loadError(t, '--client-send-queue = 1000'), /--client-send-queue: 1000 is below the minimum 65536/);
  t.equal(load(t, '--client-rate-limit = 0').limits.clientRateLimit, 0, '0 turns the byte rate off');
  t.match(loadError(t, '--client-rate-limit = 100'), /--client-rate-limit: 100 is below the minimum 1024/);
  t.match(loadError(t, '--sm-max-unacked = 5'), /--sm-max-unacked: 5 is below the minimum 10/);
  t.match(loadError(t, '--sm-resume-timeout = 0'), /--sm-resume-timeout: 0 must be more than 0 seconds/);
  t.equal(load(t, '--sm-resumption-timeout = 45').limits.smResumptionTimeout, 45, 'the key\'s first name is still read');
  t.match(loadError(t, '--offline-write-queue = 10'), /--offline-write-queue: 10 is below the minimum 100/);
  t.match(loadError(t, '--user-db-pool-size = 1'), /--user-db-pool-size: 1 is below the minimum 3/);
  t.match(loadError(t, '--max-stanza-size = 5000'), /--max-stanza-size: 5000 is below the minimum 10000/);
  t.match(loadError(t, '--max-xml-depth = 2'), /--max-xml-depth: 2 is below the minimum 8/);
  t.match(loadError(t, '--max-attributes = 0'), /--max-attributes: 0 is below the minimum 8/);
  t.match(loadError(t, '--max-auth-failures = 0'), /--max-auth-failures: 0 is below the minimum 1/);
  t.match(loadError(t, '--max-account-auth-failures = -3'), /--max-account-auth-failures: -3 is below the minimum 1/);
  t.match(loadError(t, '--offline-queue-length = -1'), /--offline-queue-length: -1 is below the minimum 0/);
  t.match(loadError(t, '--auth-timeout = 0'), /--auth-timeout: 0 must be more than 0 seconds/);
  t.match(loadError(t, '--stream-open-timeout = soon'), /--stream-open-timeout: "soon" is not a number of seconds/);
  t.match(loadError(t, '--min-cluster-nodes = 0'), /--min-cluster-nodes: 0 is below the minimum 1/);
  t.match(loadError(t, '--max-stanza-size = 1.5'), /--max-stanza-size: "1\.5" is not a whole number/);
});

t.test('--tls-cert and --tls-key come together and must exist', async (t) => {
  const dir = t.testdir({ 'cert.pem': 'x', 'key.pem': 'y' });
  const c = loadConfig(['--tls-cert=cert.pem', '--tls-key', 'key.pem'], { cwd: dir, env: {}, hostname: 'n' });
  t.equal(c.tlsCert, path.join(dir, 'cert.pem'));
  t.equal(c.tlsKey, path.join(dir, 'key.pem'));
  t.throws(() => loadConfig(['--tls-cert=cert.pem'], { cwd: dir, env: {}, hostname: 'n' }), { message: 'command line: --tls-key: is required with --tls-cert' });
  t.throws(() => loadConfig(['--tls-cert=nope.pem', '--tls-key=key.pem'], { cwd: dir, env: {}, hostname: 'n' }), { message: /--tls-cert: .*nope\.pem does not exist/ });
});

t.test('the config is deep-frozen, raw included', async (t) => {
  const c = load(t, '--comp-class-1 = muc\n--virt-hosts = a.example');
  t.ok(Object.isFrozen(c));
  t.ok(Object.isFrozen(c.virtHosts));
  t.ok(Object.isFrozen(c.limits));
  t.ok(Object.isFrozen(c.components));
  t.ok(Object.isFrozen(c.components[0]));
  t.throws(() => { (c as { logLevel: string }).logLevel = 'debug'; }, TypeError);
  t.throws(() => { (c.virtHosts as string[]).push('b.example'); }, TypeError);
  t.throws(() => { (c.limits as { maxXmlDepth: number }).maxXmlDepth = 1; }, TypeError);
  t.throws(() => { (c.raw as Map<string, string>).set('--x', 'y'); }, TypeError);
  t.throws(() => { (c.raw as Map<string, string>).delete('--virt-hosts'); }, TypeError);
  t.equal(c.raw.get('--virt-hosts'), 'a.example');
});

t.test('every key in a written file stays visible in raw, suffix stripped', async (t) => {
  const c = load(t, '--virt-hosts[s] = a.example\n--cluster-mode[B] = false', ['--log-level=warn']);
  t.same([...c.raw.entries()], [['--virt-hosts', 'a.example'], ['--cluster-mode', 'false'], ['--log-level', 'warn']]);
});

t.test('a file read error is reported, not thrown raw', async (t) => {
  const dir = t.testdir({ etc: {} });
  fs.mkdirSync(path.join(dir, 'etc', 'init.properties'));
  t.throws(() => loadConfig(['--config', 'etc/init.properties'], { cwd: dir, env: {} }), { name: 'ConfigError', message: /cannot read config file/ });
});

t.test('WebSocket/BOSH keys: trusted proxies are IP addresses, BOSH inactivity is seconds', async (t) => {
  const defaults = cmdline([]);
  t.same(defaults.trustedProxies, [], 'no proxy is trusted by default');
  t.equal(defaults.boshInactivity, 60);
  const c = load(t, '--trusted-proxies = 10.0.0.5, ::1,10.0.0.5\n--bosh-inactivity = 30');
  t.same(c.trustedProxies, ['10.0.0.5', '::1']);
  t.equal(c.boshInactivity, 30);
  t.match(loadError(t, '--trusted-proxies = proxy.example.com'), /--trusted-proxies: "proxy\.example\.com" is not an IP address/);
  t.match(loadError(t, '--bosh-inactivity = 0'), /--bosh-inactivity: 0 must be more than 0 seconds/);
});

t.test('--workers: a count or auto; each worker takes the cluster and HTTP port + k - 1', async (t) => {
  t.equal(cmdline([]).workers, 1, 'one process unless asked');
  t.equal(cmdline(['--workers=4']).workers, 4);
  t.equal(cmdline(['--workers=auto']).workers, os.availableParallelism(), 'auto: one per core');
  t.throws(() => cmdline(['--workers=0']), { message: /--workers: 0 is below the minimum 1/ });
  t.throws(() => cmdline(['--workers=many']), { message: /--workers: "many" is not a whole number/ });
  t.match(loadError(t, '--workers = 2\n--c2s-ports = 5778'), /--c2s-ports: port 5778 is also used by --cluster-port/, 'worker 2 takes cluster port 5778, also without --cluster-mode');
  t.match(loadError(t, '--workers = 3\n--http-port = 5288'), /port 5290 is also used by/, 'worker 3 would answer /health on the WebSocket port');
  t.same(load(t, '--workers = 1\n--http-port = 5290').wsPorts, [5290], 'one process may still share the HTTP port');
});
