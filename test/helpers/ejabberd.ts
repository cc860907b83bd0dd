import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { chownTree } from '../../scripts/bench/anchors';
import { loadOrCreateCertificate } from '../../server/tls';
import { eventually } from './cluster';
import { connectClient } from './client';
import type { TestDns } from './dns';
import { portsOpen, type PeerServer } from './interop';
import { freePort } from './server';
import type { TestCa } from './test-ca';

const run = promisify(execFile);
const EJABBERDCTL = '/usr/sbin/ejabberdctl';

type Test = { teardown(fn: () => unknown): void };


/** Why the ejabberd interop tests cannot run here, or undefined when they can. */
export function ejabberdMissing(): string | undefined {
  return existsSync(EJABBERDCTL) ? undefined : 'ejabberd is not installed (Debian package ejabberd)';
}

/**
 * ejabberd from Debian, started for one test as its own Erlang node on its own loopback address,
 * with its own config, spool, logs and self-signed certificate; like Prosody, its domain is its
 * address (an IP-literal domain needs no DNS). ejabberdctl runs it as the ejabberd user, so its
 * folder belongs to that user.
 */
export interface EjabberdOptions {
  /** A name for ejabberd's domain, found through `dns` (its SRV and A records are added there); ejabberd resolves ours through `dns` too (its inetrc). */
  named?: { domain: string; dns: TestDns };
  /** Certificates from this CA; ejabberd trusts it and runs without dialback, so domains are proved with SASL EXTERNAL only. */
  ca?: TestCa;
}

let started = 0;

export async function startEjabberd(t: Test, address: string, opts: EjabberdOptions = {}): Promise<PeerServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xmpp-ejabberd-'));
  const domain = opts.named?.domain ?? address;
  const node = `xmpptest${process.pid}n${++started}@localhost`;
  for (const sub of ['logs', 'spool']) mkdirSync(path.join(dir, sub));
  const { cert, key } = opts.ca ? await opts.ca.issue(domain) : await loadOrCreateCertificate({ dataDir: path.join(dir, 'tls'), hosts: [domain] });
  writeFileSync(path.join(dir, 'certificate.pem'), `${cert}\n${key}`, { mode: 0o600 });
  if (opts.ca) writeFileSync(path.join(dir, 'ca.pem'), opts.ca.cert);
  const c2sPort = await freePort();
  const s2sPort = opts.named ? await freePort() : 5269;
  if (opts.named) {
    opts.named.dns.srv(`_xmpp-server._tcp.${domain}`, { target: `xmpp.${domain}`, port: s2sPort }).a(`xmpp.${domain}`, address);
    // Erlang's resolver (which ejabberd uses for SRV and addresses) asks the test's name server only
    // (resolv_conf "" first: it would clear a nameserver given before it).
    writeFileSync(path.join(dir, 'inetrc'), ['{resolv_conf, ""}.', '{hosts_file, ""}.', `{nameserver, {127,0,0,1}, ${opts.named.dns.port}}.`, '{host, {127,0,0,1}, ["localhost"]}.', '{lookup, [file, dns]}.', ''].join('\n'));
  }
  writeFileSync(path.join(dir, 'ejabberdctl.cfg'), '');
  writeFileSync(path.join(dir, 'ejabberd.yml'), [
    'hosts:', `  - "${domain}"`,
    'loglevel: info',
    'certfiles:', `  - "${dir}/certificate.pem"`,
    'listen:',
    `  - port: ${c2sPort}`, `    ip: "${address}"`, '    module: ejabberd_c2s', '    starttls_required: true',
    `  - port: ${s2sPort}`, `    ip: "${address}"`, '    module: ejabberd_s2s_in',
    ...(opts.ca ? [`s2s_cafile: "${dir}/ca.pem"`] : []),
    // Self-signed certificates: dialback proves the domains, over STARTTLS.
    's2s_use_starttls: required',
    'auth_method: internal',
    'acl:', '  local:', '    user_regexp: ""',
    'access_rules:', '  local:', '    allow: local', '  c2s:', '    allow: all', '  s2s:', '    allow: all',
    'shaper_rules:', '  c2s_shaper: none', '  s2s_shaper: none',
    'modules:', '  mod_roster: {}', '  mod_disco: {}', '  mod_ping: {}', ...(opts.ca ? [] : ['  mod_s2s_dialback: {}']),
    '',
  ].join('\n'));
  chownTree(dir, 'ejabberd');
  const args = ['--config-dir', dir, '--config', path.join(dir, 'ejabberd.yml'), '--ctl-config', path.join(dir, 'ejabberdctl.cfg'), '--logs', path.join(dir, 'logs'), '--spool', path.join(dir, 'spool'), '--node', node];
  const child = spawn(EJABBERDCTL, [...args, 'foreground'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  t.teardown(async () => {
    await run(EJABBERDCTL, [...args, 'stop'], { timeout: 30_000 }).catch(() => undefined);
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const log = () => {
    try {
      return readFileSync(path.join(dir, 'logs', 'ejabberd.log'), 'utf8');
    } catch {
      return output;
    }
  };
  await eventually(`ejabberd listens on ${address}`, async () => {
    if (child.exitCode !== null) throw new Error(`ejabberd exited: ${output.slice(-3000)}`);
    return portsOpen(address, [c2sPort, s2sPort]);
  }, 60_000);
  return {
    name: 'ejabberd',
    domain,
    async register(local, password) {
      await run(EJABBERDCTL, [...args, 'register', local, domain, password], { timeout: 30_000 });
    },
    login: (local, password, resource) => connectClient({ service: `xmpp://${address}:${c2sPort}`, domain, local, password, resource }),
    log,
  };
}

