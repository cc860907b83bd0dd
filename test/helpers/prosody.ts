import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { loadOrCreateCertificate } from '../../server/tls';
import { eventually } from './cluster';
import { connectClient } from './client';
import { portsOpen, type PeerServer } from './interop';
import { freePort } from './server';

const run = promisify(execFile);
const PROSODY = '/usr/bin/prosody';
const PROSODYCTL = '/usr/bin/prosodyctl';

type Test = { teardown(fn: () => unknown): void };


/** Why the Prosody interop tests cannot run here, or undefined when they can. */
export function prosodyMissing(): string | undefined {
  return existsSync(PROSODY) && existsSync(PROSODYCTL) ? undefined : 'Prosody is not installed (Debian package prosody)';
}

/**
 * Prosody from Debian, started for one test on its own loopback address with its own config, data
 * and self-signed certificate (so dialback proves the domains). Its domain is its address: Prosody
 * reaches an IP-literal domain on port 5269 of that address without DNS, and so do we.
 */
export async function startProsody(t: Test, address: string): Promise<PeerServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xmpp-prosody-'));
  mkdirSync(path.join(dir, 'data'));
  const domain = address;
  const { cert, key } = await loadOrCreateCertificate({ dataDir: dir, hosts: [domain] });
  writeFileSync(path.join(dir, 'cert.pem'), cert);
  writeFileSync(path.join(dir, 'key.pem'), key, { mode: 0o600 });
  const c2sPort = await freePort();
  const config = path.join(dir, 'prosody.cfg.lua');
  writeFileSync(config, [
    'run_as_root = true',
    `pidfile = "${dir}/prosody.pid"`,
    `data_path = "${dir}/data"`,
    'daemonize = false',
    `log = { { levels = { min = "debug" }, to = "file", filename = "${dir}/prosody.log" } }`,
    `interfaces = { "${address}" }`,
    `c2s_ports = { ${c2sPort} }`,
    's2s_ports = { 5269 }',
    `s2s_interfaces = { "${address}" }`,
    'c2s_direct_tls_ports = { }', 's2s_direct_tls_ports = { }', 'http_ports = { }', 'https_ports = { }',
    'modules_enabled = { "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "presence"; "posix" }',
    // Self-signed certificates: dialback proves the domain (Prosody's default too), over TLS.
    's2s_secure_auth = false',
    's2s_require_encryption = true',
    'c2s_require_encryption = true',
    'authentication = "internal_hashed"',
    'storage = "internal"',
    `certificates = "${dir}"`,
    `VirtualHost "${domain}"`,
    `  ssl = { certificate = "${dir}/cert.pem"; key = "${dir}/key.pem"; }`,
    '',
  ].join('\n'));
  const child = spawn(PROSODY, ['--config', config, '-F'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const log = () => {
    try {
      return readFileSync(path.join(dir, 'prosody.log'), 'utf8');
    } catch {
      return output;
    }
  };
  await eventually(`Prosody listens on ${address}`, async () => {
    if (child.exitCode !== null) throw new Error(`Prosody exited: ${output}\n${log().slice(-3000)}`);
    return portsOpen(address, [c2sPort, 5269]);
  }, 30_000);
  return {
    name: 'Prosody',
    domain,
    async register(local, password) {
      await run(PROSODYCTL, ['--config', config, 'register', local, domain, password], { timeout: 30_000 });
    },
    login: (local, password, resource) => connectClient({ service: `xmpp://${address}:${c2sPort}`, domain, local, password, resource }),
    log,
  };
}
