import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, createHmac, pbkdf2Sync, randomUUID } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { loadOrCreateCertificate } from '../../server/tls';

const run = promisify(execFile);

/**
 * Other servers run by `npm run bench` beside ours, on the same loopback host and driven by the
 * same generator: Prosody and ejabberd from Debian (`apt-get install prosody ejabberd`; their
 * system services stopped). Each gets its own folder, config, self-signed certificate and a free
 * client port, the domain `localhost`, and the same accounts and password as ours.
 */
export interface AnchorServer {
  name: string;
  /** How it was configured, for BENCHMARKS.md. */
  settings: string;
  port: number;
  process: ChildProcess;
  /** Makes the accounts `names` with `password` (before any client logs in). */
  createAccounts(names: string[], password: string): Promise<void>;
  stop(): Promise<void>;
}

const PROSODY = '/usr/bin/prosody';
const EJABBERDCTL = '/usr/sbin/ejabberdctl';

/** Which anchors can run here. */
export function installedAnchors(): { prosody: boolean; ejabberd: boolean } {
  return { prosody: existsSync(PROSODY), ejabberd: existsSync(EJABBERDCTL) };
}

/**
 * Prosody 0.12 "tuned" as the published comparison: Lua's default GC pacing (pause 200, step
 * multiplier 100) instead of Prosody's more eager one, and TCP_NODELAY (nagle = false); the
 * modules of a usual install without archiving (Prosody does not archive by default; we do).
 * Accounts are written straight into its data folder as its default internal_hashed store keeps
 * them (SCRAM-SHA-1 keys, `iterations` as ours), which is what prosodyctl register does, without a
 * Lua start per account.
 */
export async function startProsody(dir: string, port: number, iterations: number): Promise<AnchorServer> {
  mkdirSync(path.join(dir, 'data'), { recursive: true });
  const { cert, key } = await loadOrCreateCertificate({ dataDir: dir, hosts: ['localhost'] });
  writeFileSync(path.join(dir, 'cert.pem'), cert);
  writeFileSync(path.join(dir, 'key.pem'), key, { mode: 0o600 });
  const modules = ['roster', 'saslauth', 'tls', 'disco', 'carbons', 'pep', 'private', 'blocklist', 'vcard_legacy', 'version', 'uptime', 'time', 'ping', 'posix', 'smacks'];
  const config = path.join(dir, 'prosody.cfg.lua');
  writeFileSync(config, [
    ...prosodyProcessConfig(dir),
    'log = { { levels = { min = "error" }, to = "console" } }',
    'interfaces = { "127.0.0.1" }',
    `c2s_ports = { ${port} }`,
    's2s_ports = { }', 'c2s_direct_tls_ports = { }', 's2s_direct_tls_ports = { }', 'http_ports = { }', 'https_ports = { }', 'component_ports = { }',
    `modules_enabled = { ${modules.map((m) => `"${m}"`).join('; ')} }`,
    'c2s_require_encryption = true',
    'authentication = "internal_hashed"',
    'storage = "internal"',
    'gc = { mode = "incremental"; threshold = 200; speed = 100 }',
    'network_settings = { nagle = false }',
    'limits = { c2s = { rate = "100mb/s" } }',
    `certificates = "${dir}"`,
    'VirtualHost "localhost"',
    `  ssl = { certificate = "${dir}/cert.pem"; key = "${dir}/key.pem"; }`,
    '',
  ].join('\n'));
  const accounts = path.join(dir, 'data', 'localhost', 'accounts');
  const child = spawn(PROSODY, ['--config', config, '-F'], { stdio: ['ignore', 'inherit', 'inherit'] });
  await listening(port, child, 'Prosody', 30_000);
  return {
    name: 'Prosody',
    settings: `Prosody ${await version([PROSODY.replace(/prosody$/, 'prosodyctl'), 'about'], /Prosody (\d[\w.+~-]*)/)}, epoll, GC pause 200 / step 100, TCP_NODELAY, SCRAM-SHA-1 keys (${iterations} iterations), no archive`,
    port,
    process: child,
    async createAccounts(names, password) {
      mkdirSync(accounts, { recursive: true });
      // One salt for all: each login still derives the key (PBKDF2) as with its own.
      const salt = randomUUID();
      const salted = pbkdf2Sync(password, salt, iterations, 20, 'sha1');
      const storedKey = createHash('sha1').update(createHmac('sha1', salted).update('Client Key').digest()).digest('hex');
      const serverKey = createHmac('sha1', salted).update('Server Key').digest('hex');
      const record = `return {\n\t["stored_key"] = "${storedKey}";\n\t["server_key"] = "${serverKey}";\n\t["salt"] = "${salt}";\n\t["iteration_count"] = ${iterations};\n};\n`;
      for (const name of names) writeFileSync(path.join(accounts, `${encodeURIComponent(name).replace(/\./g, '%2e')}.dat`), record);
    },
    stop: () => stopChild(child),
  };
}

/** The lines of a Prosody config that make it a foreground process of ours with its files in `dir` (even as root). */
export function prosodyProcessConfig(dir: string): string[] {
  return ['run_as_root = true', `pidfile = "${dir}/prosody.pid"`, `data_path = "${dir}/data"`, 'daemonize = false'];
}

/**
 * ejabberd 23.01 from Debian as its own Erlang node (ejabberdctl starts it through su, whose PAM
 * limits allow it 1,024 open files: the bench keeps every scenario under that), with in-memory (Mnesia) accounts made by
 * in-band registration from the generator (XEP-0077; `ejabberdctl register` starts a VM per account),
 * no shapers, and the modules of a usual install without archiving.
 */
export async function startEjabberd(port: number, register: (names: string[], password: string) => Promise<void>): Promise<AnchorServer> {
  // Its own folder under the temporary one: the ejabberd user must be able to reach it.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xmpp-bench-ejabberd-'));
  for (const sub of ['logs', 'spool']) mkdirSync(path.join(dir, sub), { recursive: true });
  const { cert, key } = await loadOrCreateCertificate({ dataDir: path.join(dir, 'tls'), hosts: ['localhost'] });
  writeFileSync(path.join(dir, 'certificate.pem'), `${cert}\n${key}`, { mode: 0o600 });
  writeFileSync(path.join(dir, 'ejabberdctl.cfg'), '');
  writeFileSync(path.join(dir, 'ejabberd.yml'), [
    'hosts:', '  - "localhost"',
    'loglevel: error',
    'certfiles:', `  - "${dir}/certificate.pem"`,
    'listen:',
    `  - port: ${port}`, '    ip: "127.0.0.1"', '    module: ejabberd_c2s', '    starttls_required: true', '    max_stanza_size: 262144', '    shaper: none', '    access: c2s', '    backlog: 1024',
    'auth_method: internal',
    'auth_password_format: plain',
    'registration_timeout: infinity',
    'acl:', '  local:', '    user_regexp: ""',
    'access_rules:', '  local:', '    allow: local', '  c2s:', '    allow: all', '  register:', '    allow: all',
    'shaper_rules:', '  c2s_shaper: none', '  s2s_shaper: none',
    'modules:', '  mod_roster: {}', '  mod_disco: {}', '  mod_ping: {}', '  mod_private: {}', '  mod_blocking: {}', '  mod_privacy: {}',
    '  mod_vcard: {}', '  mod_version: {}', '  mod_stream_mgmt: {}', '  mod_caps: {}',
    '  mod_register:', '    access: register', '    ip_access: all', '    welcome_message: {}',
    '',
  ].join('\n'));
  chownTree(dir, 'ejabberd');
  const args = ['--config-dir', dir, '--config', path.join(dir, 'ejabberd.yml'), '--ctl-config', path.join(dir, 'ejabberdctl.cfg'), '--logs', path.join(dir, 'logs'), '--spool', path.join(dir, 'spool'), '--node', `xmppbench${process.pid}@localhost`];
  const child = spawn(EJABBERDCTL, [...args, 'foreground'], { stdio: ['ignore', 'ignore', 'inherit'] });
  await listening(port, child, 'ejabberd', 60_000);
  return {
    name: 'ejabberd',
    settings: `ejabberd ${await version(['dpkg-query', '-W', '-f=${Version}', 'ejabberd'], /^(\S+)/)}, Mnesia, no shapers, passwords stored plain (its default), no archive`,
    port,
    process: child,
    createAccounts: register,
    async stop() {
      await run(EJABBERDCTL, [...args, 'stop'], { timeout: 30_000 }).catch(() => undefined);
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function version(command: string[], pattern: RegExp): Promise<string> {
  try {
    const { stdout } = await run(command[0], command.slice(1), { timeout: 30_000 });
    return pattern.exec(stdout)?.[1] ?? '?';
  } catch {
    return '?';
  }
}

async function listening(port: number, child: ChildProcess, name: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode})`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`${name} does not listen on ${port}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

/** ejabberdctl runs the node as the ejabberd user: its folder must be that user's. */
export function chownTree(dir: string, user: string): void {
  const passwd = readFileSync('/etc/passwd', 'utf8').split('\n').find((line) => line.startsWith(`${user}:`));
  if (!passwd) return;
  const [, , uid, gid] = passwd.split(':');
  const walk = (p: string) => {
    chownSync(p, Number(uid), Number(gid));
    if (statSync(p).isDirectory()) for (const entry of readdirSync(p)) walk(path.join(p, entry));
  };
  walk(dir);
}
