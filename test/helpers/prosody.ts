import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { prosodyProcessConfig } from '../../scripts/bench/anchors';
import { loadOrCreateCertificate } from '../../server/tls';
import { eventually } from './cluster';
import { connectClient } from './client';
import type { TestDns } from './dns';
import { portsOpen, type PeerServer } from './interop';
import { freePort } from './server';
import type { TestCa } from './test-ca';

const run = promisify(execFile);
const PROSODY = '/usr/bin/prosody';
const PROSODYCTL = '/usr/bin/prosodyctl';

type Test = { teardown(fn: () => unknown): void };


/** Why the Prosody interop tests cannot run here, or undefined when they can. */
export function prosodyMissing(): string | undefined {
  return existsSync(PROSODY) && existsSync(PROSODYCTL) ? undefined : 'Prosody is not installed (Debian package prosody)';
}

/** Why Prosody cannot be pointed at a test's name server (it needs libunbound's Lua binding), or undefined when it can. */
export function prosodyDnsMissing(): string | undefined {
  return prosodyMissing() ?? (['5.4', '5.3', '5.2', '5.1'].some((v) => existsSync(`/usr/lib/x86_64-linux-gnu/lua/${v}/lunbound.so`) || existsSync(`/usr/lib/aarch64-linux-gnu/lua/${v}/lunbound.so`))
    ? undefined
    : 'Prosody has no libunbound binding to use a test name server (Debian package lua-unbound)');
}

export interface ProsodyOptions {
  /**
   * A name for Prosody's domain, found through `dns` (its SRV and A records are added there),
   * instead of its address; Prosody then resolves ours through `dns` too (libunbound's forward).
   */
  named?: { domain: string; dns: TestDns };
  /** Certificates from this CA: Prosody gets one for its domain, trusts the CA, and requires valid certificates (s2s_secure_auth), so domains are proved with SASL EXTERNAL. */
  ca?: TestCa;
}

/**
 * Prosody from Debian, started for one test on its own loopback address with its own config, data
 * and self-signed certificate (so dialback proves the domains). Its domain is its address: Prosody
 * reaches an IP-literal domain on port 5269 of that address without DNS, and so do we.
 */
export async function startProsody(t: Test, address: string, opts: ProsodyOptions = {}): Promise<PeerServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xmpp-prosody-'));
  mkdirSync(path.join(dir, 'data'));
  const domain = opts.named?.domain ?? address;
  const { cert, key } = opts.ca ? await opts.ca.issue(domain) : await loadOrCreateCertificate({ dataDir: dir, hosts: [domain] });
  writeFileSync(path.join(dir, 'cert.pem'), cert);
  writeFileSync(path.join(dir, 'key.pem'), key, { mode: 0o600 });
  if (opts.ca) writeFileSync(path.join(dir, 'ca.pem'), opts.ca.cert);
  const c2sPort = await freePort();
  // Named: any free port, which the SRV record gives; by address: 5269, where a peer looks without DNS.
  const s2sPort = opts.named ? await freePort() : 5269;
  if (opts.named) opts.named.dns.srv(`_xmpp-server._tcp.${domain}`, { target: `xmpp.${domain}`, port: s2sPort }).a(`xmpp.${domain}`, address);
  const config = path.join(dir, 'prosody.cfg.lua');
  writeFileSync(config, [
    ...prosodyProcessConfig(dir),
    `log = { { levels = { min = "debug" }, to = "file", filename = "${dir}/prosody.log" } }`,
    `interfaces = { "${address}" }`,
    `c2s_ports = { ${c2sPort} }`,
    `s2s_ports = { ${s2sPort} }`,
    `s2s_interfaces = { "${address}" }`,
    'c2s_direct_tls_ports = { }', 's2s_direct_tls_ports = { }', 'http_ports = { }', 'https_ports = { }',
    'modules_enabled = { "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "presence"; "posix" }',
    // Self-signed certificates: dialback proves the domain (Prosody's default too), over TLS; with
    // the test CA, certificates must prove the domains (SASL EXTERNAL both ways).
    `s2s_secure_auth = ${opts.ca ? 'true' : 'false'}`,
    ...(opts.named ? [`unbound = { resolvconf = false; hoststxt = false; forward = "127.0.0.1@${opts.named.dns.port}" }`] : []),
    's2s_require_encryption = true',
    'c2s_require_encryption = true',
    'authentication = "internal_hashed"',
    'storage = "internal"',
    `certificates = "${dir}"`,
    `VirtualHost "${domain}"`,
    `  ssl = { certificate = "${dir}/cert.pem"; key = "${dir}/key.pem"; ${opts.ca ? `cafile = "${dir}/ca.pem"; ` : ''}}`,
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
    return portsOpen(address, [c2sPort, s2sPort]);
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
