import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { createInterface } from 'node:readline';
import { deriveScramCredentialsAsync } from '../server/c2s/sasl/scram';
import { SERVER_VERSION } from '../server/version';
import { exportPie, importPie } from './pie';
import type { SessionInfo } from '../server/sm/session-admin';
import { ConfigError, loadConfig } from '../server/config/config';
import type { Config } from '../server/config/types';
import { tryParseJID } from '../server/jid';
import { openStorage } from '../server/storage/open-storage';
import { UserExistsError, type Storage } from '../server/storage/types';

const USAGE = `usage: xmppctl --config FILE [--key=value ...] <command>
commands:
  adduser JID [PASSWORD]  create an account; without PASSWORD it is asked for (or read from
                          standard input when that is not a terminal); with --random one is
                          generated and printed
  passwd JID [PASSWORD]   set a new password (asked for in the same way; --random too)
  deluser JID             delete an account and everything stored for it
  listusers [DOMAIN]      list accounts
  export FILE [DOMAIN]    write the accounts (with SCRAM credentials), rosters, vCards, private
                          data and offline messages to FILE in XEP-0227 format (mode 0600)
  import FILE             read a XEP-0227 file (from ejabberd export_piefxis, Prosody, Tigase or
                          export); existing accounts are left alone
  cluster-nodes           show the cluster_nodes table with each row's age
  migrate                 bring the database schema up to date
  status                  this node's state (from its --http-port) and the cluster's nodes
  sessions [JID|DOMAIN]   the sessions on every node of the cluster (of one user or domain)
  kick JID                end a session (full JID) or all of a user's sessions (bare JID), on any node
  stats                   registered, disabled and online users per domain; sessions per node
  reload                  make the running node re-read its configuration (as SIGHUP)
  drain                   readiness turns 503 so balancers send new clients elsewhere; sessions go on
  check-config            validate the configuration without starting (exit 1 on errors)
  version                 print the server version
sessions, kick, stats, reload and drain talk to the node running with this configuration, through
its control socket (--control-socket, in --data-dir).`;

/** A failure with a one-line reason; exit code 1. */
class CommandError extends Error {}

type Command = (storage: Storage, config: Config, args: string[]) => Promise<void>;

/** How long xmppctl waits for the node's answer on its control socket [30000 ms]. */
const CONTROL_TIMEOUT_MS = 30_000;

/** Random passwords: 18 bytes, 24 characters of base64url. */
const RANDOM_PASSWORD_BYTES = 18;

/** A command works on the database (`run`) or without opening it (`noStorage`: the running node, or nothing). */
type CommandSpec = { args: [number, number] } & ({ run: Command } | { noStorage: (config: Config, args: string[]) => void | Promise<void> });

const commands: Record<string, CommandSpec> = {
  adduser: {
    args: [1, 2],
    async run(storage, config, [jidArg, given]) {
      const jid = accountJid(jidArg, config);
      const password = await passwordFor(jid, given);
      try {
        await storage.users.create(jid, await deriveScramCredentialsAsync(password, config.scramIterations));
      } catch (err) {
        if (err instanceof UserExistsError) throw new CommandError(`${jid} already exists`);
        throw err;
      }
      console.log(`created ${jid}`);
    },
  },
  passwd: {
    args: [1, 2],
    async run(storage, config, [jidArg, given]) {
      const jid = accountJid(jidArg, config);
      if (!(await storage.users.get(jid))) throw new CommandError(`no such user: ${jid}`);
      const password = await passwordFor(jid, given);
      if (!(await storage.users.setCredentials(jid, await deriveScramCredentialsAsync(password, config.scramIterations)))) {
        throw new CommandError(`no such user: ${jid}`);
      }
      console.log(`password changed for ${jid}`);
    },
  },
  deluser: {
    args: [1, 1],
    async run(storage, config, [jidArg]) {
      const jid = accountJid(jidArg, config);
      if (!(await storage.users.delete(jid))) throw new CommandError(`no such user: ${jid}`);
      console.log(`deleted ${jid}`);
    },
  },
  listusers: {
    args: [0, 1],
    async run(storage, config, [domainArg]) {
      const domain = domainArg?.toLowerCase();
      if (domain !== undefined && !config.virtHosts.includes(domain)) throw new CommandError(notServed(domain, config));
      for (const jid of await storage.users.list(domain)) console.log(jid);
    },
  },
  status: {
    args: [0, 0],
    async run(storage, config) {
      // The running node answers on its HTTP port; the cluster's view comes from the database.
      const host = config.bindAddress === '0.0.0.0' || config.bindAddress === '::' ? '127.0.0.1' : config.bindAddress;
      let node: Record<string, unknown>;
      try {
        if (config.httpPort === 0) throw new Error('--http-port is 0');
        const res = await fetch(`http://${host.includes(':') ? `[${host}]` : host}:${config.httpPort}/status`, { signal: AbortSignal.timeout(5000) });
        node = (await res.json()) as Record<string, unknown>;
      } catch (err) {
        throw new CommandError(`no node answers on http://${host}:${config.httpPort}/status (${(err as Error).message}): is it running with this configuration?`);
      }
      const connections = Object.entries((node.connections ?? {}) as Record<string, number>).map(([k, v]) => `${k} ${v}`).join(', ');
      const cluster = (node.cluster ?? {}) as { nodes?: number; minNodes?: number };
      console.log(`node        ${node.node} (version ${node.version}, up ${node.uptimeSeconds} s${node.serving ? '' : ', stopping'})`);
      console.log(`sessions    ${node.sessions}`);
      console.log(`connections ${connections || 'none'}`);
      console.log(`database    ${(node.database as { kind?: string; reachable?: boolean })?.kind} (${(node.database as { reachable?: boolean })?.reachable ? 'answers' : 'does not answer'})`);
      console.log(`cluster     ${cluster.nodes ?? 1} node(s) connected${config.clusterMode ? '' : ' (not clustered)'}`);
      const rows: Record<string, unknown>[] = await storage.knex('cluster_nodes').select('hostname', 'last_update').orderBy('hostname');
      for (const row of rows) {
        const age = (Date.now() - new Date(row.last_update as string | Date).getTime()) / 1000;
        console.log(`            ${row.hostname} (row ${age.toFixed(1)} s old)`);
      }
    },
  },
  export: {
    args: [1, 2],
    async run(storage, config, [file, domainArg]) {
      const domain = domainArg?.toLowerCase();
      if (domain !== undefined && !config.virtHosts.includes(domain)) throw new CommandError(notServed(domain, config));
      const { document, users } = await exportPie(storage, domain ? [domain] : config.virtHosts);
      try {
        // It holds credentials and private data: readable by this user only, and never over another file.
        writeFileSync(file, document, { mode: 0o600, flag: 'wx' });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new CommandError(`${file} exists; choose another name`);
        throw err;
      }
      console.log(`exported ${users} account(s) to ${file}`);
    },
  },
  import: {
    args: [1, 1],
    async run(storage, config, [file]) {
      const report = await importPie(storage, file, config.virtHosts, {
        scramIterations: config.scramIterations,
        offlineLimit: config.limits.offlineQueueLength,
      });
      for (const jid of report.imported) console.log(`imported ${jid}`);
      for (const jid of report.skipped) console.log(`skipped ${jid}: the account exists here`);
      for (const host of report.otherHosts) console.log(`skipped host ${host}: not in --virt-hosts`);
      for (const jid of report.oneHashOnly) {
        console.log(`note: ${jid} came with one SCRAM hash only; it logs in with that mechanism or PLAIN until its password is set again (xmppctl passwd)`);
      }
      for (const problem of report.problems) console.error(`problem: ${problem}`);
      console.log(`${report.imported.length} account(s) imported, ${report.skipped.length} skipped`);
      if (report.problems.length > 0) throw new CommandError(`${report.problems.length} item(s) could not be imported (above)`);
    },
  },
  'cluster-nodes': {
    args: [0, 0],
    async run(storage, config) {
      const rows: Record<string, unknown>[] = await storage.knex('cluster_nodes').select('*').orderBy('hostname');
      if (rows.length === 0) {
        // Most often the wrong database: a node registers itself at start and refreshes its row.
        throw new CommandError(`no cluster nodes registered in ${describeDb(config.userDbUri)}: is this the cluster's database (--user-db-uri), and is a node running?`);
      }
      const now = Date.now();
      const table = rows.map((row) => ({
        hostname: String(row.hostname),
        address: `${row.address ?? ''}:${row.port ?? ''}`,
        version: String(row.version ?? ''),
        connections: String(row.connections ?? 0),
        'last update': new Date(row.last_update as string | Date).toISOString(),
        age: `${((now - new Date(row.last_update as string | Date).getTime()) / 1000).toFixed(1)}s`,
        state: row.draining_since == null ? 'serving' : 'draining',
      }));
      printTable(table);
    },
  },
  migrate: {
    args: [0, 0],
    async run(storage) {
      await storage.migrate();
      console.log('database schema is up to date');
    },
  },
  sessions: {
    args: [0, 1],
    async noStorage(config, [target]) {
      const query = new URLSearchParams();
      if (target) {
        const jid = tryParseJID(target);
        if (!jid || jid.resource) throw new CommandError(`not a bare JID or domain: ${target}`);
        if (!config.virtHosts.includes(jid.domain)) throw new CommandError(notServed(jid.domain, config));
        query.set(jid.local ? 'user' : 'domain', jid.toString());
      }
      const { sessions, unanswered } = (await control(config, 'GET', `/sessions?${query}`)) as { sessions: SessionInfo[]; unanswered: string[] };
      if (sessions.length > 0) {
        printTable(sessions.map((s) => ({
          jid: s.jid, node: s.node, transport: s.transport, address: s.address ?? '-', since: s.since, presence: s.available ? 'available' : '-',
        })));
      }
      console.log(`${sessions.length} session(s)`);
      warnUnanswered(unanswered);
    },
  },
  kick: {
    args: [1, 1],
    async noStorage(config, [target]) {
      const jid = tryParseJID(target);
      if (!jid || !jid.local) throw new CommandError(`not a user JID (user@domain or user@domain/resource): ${target}`);
      if (!config.virtHosts.includes(jid.domain)) throw new CommandError(notServed(jid.domain, config));
      const { ended, unanswered } = (await control(config, 'POST', `/kick?${new URLSearchParams({ jid: jid.toString() })}`)) as { ended: SessionInfo[]; unanswered: string[] };
      warnUnanswered(unanswered);
      if (ended.length === 0) throw new CommandError(`no session of ${jid} is online`);
      for (const s of ended) console.log(`ended ${s.jid} on ${s.node}`);
    },
  },
  stats: {
    args: [0, 0],
    async noStorage(config) {
      const stats = (await control(config, 'GET', '/stats')) as {
        domains: Record<string, { registered: number; disabled: number; onlineUsers: number; sessions: number }>;
        sessionsPerNode: Record<string, number>;
        unanswered: string[];
      };
      printTable(Object.entries(stats.domains).map(([domain, d]) => ({
        domain, registered: String(d.registered), disabled: String(d.disabled), 'online users': String(d.onlineUsers), sessions: String(d.sessions),
      })));
      for (const [node, n] of Object.entries(stats.sessionsPerNode).sort()) console.log(`node ${node}: ${n} session(s)`);
      warnUnanswered(stats.unanswered);
    },
  },
  reload: {
    args: [0, 0],
    async noStorage(config) {
      const { changed } = (await control(config, 'POST', '/reload')) as { changed: string };
      console.log(`configuration reloaded; changed: ${changed}`);
    },
  },
  drain: {
    args: [0, 0],
    async noStorage(config) {
      await control(config, 'POST', '/drain');
      console.log('draining: /health/ready answers 503, so balancers send new clients to other nodes; sessions go on until the node stops');
    },
  },
  'check-config': {
    args: [0, 0],
    noStorage(config) {
      for (const warning of config.warnings ?? []) console.log(`warning: ${warning}`);
      console.log(`configuration is valid${config.configFile ? `: ${config.configFile}` : ''}`);
    },
  },
  version: {
    args: [0, 0],
    noStorage() {
      console.log(`xmpp-cluster-server ${SERVER_VERSION}`);
    },
  },
};

/**
 * One request to the running node's control socket; its JSON answer. A missing socket or a node
 * that does not answer is a CommandError saying so; an error answer carries the node's reason.
 */
function control(config: Config, method: 'GET' | 'POST', path: string): Promise<unknown> {
  const socketPath = config.controlSocket;
  if (!socketPath) throw new CommandError('--control-socket is 0: this command needs the running node\'s control socket');
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method, path, timeout: CONTROL_TIMEOUT_MS }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        let body: Record<string, unknown>;
        try {
          body = JSON.parse(text);
        } catch {
          reject(new CommandError(`the node answered something that is not JSON (HTTP ${res.statusCode})`));
          return;
        }
        if (res.statusCode !== 200) reject(new CommandError(String(body.error ?? `HTTP ${res.statusCode}`)));
        else resolve(body);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${CONTROL_TIMEOUT_MS / 1000} s`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? 'no node is running with this configuration' : err.message;
      reject(new CommandError(`cannot reach the node's control socket ${socketPath}: ${why}`));
    });
    req.end();
  });
}

/** Cluster-wide commands say which nodes did not answer: their part is missing. */
function warnUnanswered(unanswered: string[]): void {
  if (unanswered.length > 0) console.error(`warning: no answer from ${unanswered.join(', ')}; their sessions are not included`);
}

/** A random password is `--random`; none given is asked for (a terminal) or read (a pipe). */
async function passwordFor(jid: string, given: string | undefined): Promise<string> {
  if (given === '--random') {
    const password = randomBytes(RANDOM_PASSWORD_BYTES).toString('base64url');
    console.log(`password for ${jid}: ${password}`);
    return password;
  }
  if (given !== undefined) return given;
  const password = process.stdin.isTTY ? await promptHidden(`password for ${jid}: `) : await readLine(process.stdin);
  if (process.stdin.isTTY && (await promptHidden('again: ')) !== password) throw new CommandError('the passwords differ');
  if (password === '') throw new CommandError('an empty password');
  return password;
}

/** The first line of a stream (a password piped in), without its line end. */
async function readLine(stream: NodeJS.ReadableStream): Promise<string> {
  const lines = createInterface({ input: stream, terminal: false });
  try {
    for await (const line of lines) return line;
    return '';
  } finally {
    lines.close();
  }
}

/** Asks on the terminal without echoing what is typed. */
function promptHidden(question: string): Promise<string> {
  return new Promise((resolve) => {
    const stdin = process.stdin;
    process.stderr.write(question);
    stdin.setRawMode?.(true);
    stdin.resume();
    let answer = '';
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') {
          stdin.off('data', onData);
          stdin.setRawMode?.(false);
          stdin.pause();
          process.stderr.write('\n');
          resolve(answer);
          return;
        }
        if (ch === '\u0003') process.exit(130);
        answer = ch === '\u007f' ? answer.slice(0, -1) : answer + ch;
      }
    };
    stdin.on('data', onData);
  });
}

/** The database a URI names, without its password. */
function describeDb(uri: string): string {
  return uri.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@').replace(/password=[^&]*/, 'password=***');
}

function accountJid(input: string, config: Config): string {
  const jid = tryParseJID(input);
  if (!jid || !jid.local || jid.resource) throw new CommandError(`not an account JID (user@domain): ${input}`);
  if (!config.virtHosts.includes(jid.domain)) throw new CommandError(notServed(jid.domain, config));
  return jid.toString();
}

function notServed(domain: string, config: Config): string {
  return `${domain} is not served by this server (--virt-hosts = ${config.virtHosts.join(',')})`;
}

function printTable(rows: Record<string, string>[]): void {
  const columns = Object.keys(rows[0]);
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd();
  console.log(line(columns));
  for (const row of rows) console.log(line(columns.map((c) => row[c])));
}

/** Splits argv into config options (--key=value, --config FILE) and the command with its arguments. */
function splitArgs(argv: string[]): { options: string[]; positional: string[] } {
  const options: string[] = [];
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--config' && i + 1 < argv.length) options.push(arg, argv[++i]);
    else if (arg.startsWith('--') && arg.includes('=')) options.push(arg);
    else positional.push(arg);
  }
  return { options, positional };
}

export async function run(argv: string[]): Promise<number> {
  const { options, positional } = splitArgs(argv);
  const [name, ...args] = positional;
  const command = name ? commands[name] : undefined;
  if (!command || args.length < command.args[0] || args.length > command.args[1]) {
    console.error(name && !command ? `unknown command: ${name}\n${USAGE}` : USAGE);
    return 2;
  }
  let storage: Storage | undefined;
  try {
    const config = loadConfig(options);
    if ('noStorage' in command) {
      await command.noStorage(config, args);
      return 0;
    }
    storage = await openStorage(config.userDbUri);
    await command.run(storage, config, args);
    return 0;
  } catch (err) {
    if (err instanceof CommandError || err instanceof ConfigError) console.error(`xmppctl: ${err.message}`);
    else console.error(`xmppctl: ${(err as Error)?.message ?? err}`);
    return 1;
  } finally {
    await storage?.close();
  }
}

if (require.main === module) {
  run(process.argv.slice(2)).then((code) => process.exit(code));
}
