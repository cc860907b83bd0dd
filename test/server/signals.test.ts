import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import os from 'node:os';
import tls from 'node:tls';
import path from 'node:path';
import t from 'tap';
import { eventually, httpGet } from '../helpers/cluster';
import { freePort, RawConnection, STREAM_OPEN } from '../helpers/server';
import { loadOrCreateCertificate } from '../../server/tls';

const ROOT = path.resolve(__dirname, '..', '..');
const MAIN = path.join(ROOT, 'dist', 'server', 'main.js');
const WAIT_MS = 20_000;

const read = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8') : '');

// A balancer's view of a node told to stop: SIGTERM with --drain-grace makes it not ready first
// (new clients go elsewhere) while it keeps serving, then it stops and exits 0.
t.test('SIGTERM with --drain-grace: not ready at once, serving meanwhile, then a clean exit', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xmpp-drain-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const [c2s, http] = [await freePort(), await freePort()];
  const node = spawn(process.execPath, [
    MAIN, '--virt-hosts=localhost', `--c2s-ports=${c2s}`, '--c2s-ssl-ports=0', '--s2s-ports=0', '--s2s-ssl-ports=0', '--ws-ports=0', '--bosh-ports=0', `--http-port=${http}`,
    '--bind-address=127.0.0.1', `--data-dir=${path.join(dir, 'var')}`, '--tls-required=false', '--drain-grace=3',
  ], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  node.stdout.on('data', (d) => (output += d));
  node.stderr.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => node.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (node.exitCode === null && node.signalCode === null) node.kill('SIGKILL');
  });
  await eventually('started', () => /node started/.test(output), WAIT_MS);
  t.equal((await httpGet(http, '/health/ready')).status, 200);
  node.kill('SIGTERM');
  await eventually('draining', () => /draining before stopping/.test(output), WAIT_MS);
  const ready = await httpGet(http, '/health/ready');
  t.equal(ready.status, 503, 'not ready while draining');
  t.match(ready.body, /draining/);
  t.equal((await httpGet(http, '/health/live')).status, 200, 'but alive');
  const conn = await RawConnection.connect(c2s);
  conn.write(STREAM_OPEN);
  await conn.waitFor(/<\/stream:features>/, WAIT_MS);
  t.pass('and still serving clients');
  t.equal(await exited, 0, 'then it stops cleanly');
  t.match(output, /node stopped/);
  conn.destroy();
});

// An operator's node: a config file, a log file that logrotate moves away, and SIGHUP to reload.
t.test('SIGHUP reopens the log file and applies the changed configuration; SIGTERM stops cleanly', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xmpp-signals-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const [c2s, c2sTls] = [await freePort(), await freePort()];
  // The operator's certificate files; renewal replaces them in place.
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  const certificates = await Promise.all(['one', 'two'].map((n) => loadOrCreateCertificate({ hosts: ['localhost'], dataDir: path.join(dir, n) })));
  writeFileSync(certFile, certificates[0].cert);
  writeFileSync(keyFile, certificates[0].key);
  const log = path.join(dir, 'xmpp.log');
  const configFile = path.join(dir, 'init.properties');
  const base = [
    '--virt-hosts = localhost', `--c2s-ports = ${c2s}`, `--c2s-ssl-ports = ${c2sTls}`, `--tls-cert = ${certFile}`, `--tls-key = ${keyFile}`, '--ws-ports = 0', '--bosh-ports = 0', '--s2s-ports = 0', '--s2s-ssl-ports = 0',
    '--http-port = 0', '--bind-address = 127.0.0.1', `--data-dir = ${path.join(dir, 'var')}`, `--log-file = ${log}`,
    '--tls-required = false',
  ];
  writeFileSync(configFile, base.join('\n') + '\n');
  const node = spawn(process.execPath, [MAIN, '--config', configFile], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  node.stdout.on('data', (d) => (output += d));
  node.stderr.on('data', (d) => (output += d));
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => node.on('exit', (code, signal) => resolve({ code, signal })));
  t.teardown(() => {
    if (node.exitCode === null && node.signalCode === null) node.kill('SIGKILL');
  });
  await eventually('the node started', () => /node started/.test(read(log)), WAIT_MS);

  await t.test('a SIGHUP does not stop the node', async (t) => {
    node.kill('SIGHUP');
    await eventually('the reload is logged', () => /configuration reloaded/.test(read(log)), WAIT_MS);
    t.equal(node.exitCode, null, 'still running');
    t.equal(node.signalCode, null);
  });

  await t.test('after rotation (the file moved away), SIGHUP writes a new file at the configured path', async (t) => {
    renameSync(log, `${log}.1`);
    node.kill('SIGHUP');
    await eventually('a new log file with the reload line', () => /configuration reloaded/.test(read(log)), WAIT_MS);
    t.notMatch(read(log), /node started/, 'the new file starts after the rotation');
    const rotated = read(`${log}.1`);
    t.equal(rotated.match(/configuration reloaded/g)?.length, 1, 'the rotated file gets nothing more');
  });

  await t.test('a changed log level, debug category and limit take effect without a restart', async (t) => {
    writeFileSync(configFile, [...base, '--debug = c2s', '--max-auth-failures = 1', '--admins = root@localhost'].join('\n') + '\n');
    const before = read(log).length;
    node.kill('SIGHUP');
    await eventually('reloaded', () => /configuration reloaded.*maxAuthFailures=1.*admins=root@localhost/.test(read(log).slice(before)), WAIT_MS);
    const conn = await RawConnection.connect(c2s);
    t.teardown(() => conn.destroy());
    conn.write(STREAM_OPEN);
    await conn.waitFor(/<\/stream:features>/, WAIT_MS);
    await eventually('a c2s debug line for the new connection', () => /debug +\[c2s conn=c2s-\d+\] connected/.test(read(log).slice(before)), WAIT_MS);
    conn.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>${Buffer.from('n,,n=nobody,r=abcdefgh').toString('base64')}</auth>`);
    await conn.waitFor(/<challenge/, WAIT_MS);
    conn.write(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>${Buffer.from('c=biws,r=abcdefghwrong,p=AAAA').toString('base64')}</response>`);
    await conn.waitFor(/policy-violation/, WAIT_MS);
    t.pass('one failed attempt closes the stream: --max-auth-failures = 1 applies');
  });

  await t.test('a renewed certificate is served to new connections', async (t) => {
    const served = async () => {
      const socket = tls.connect({ port: c2sTls, host: '127.0.0.1', rejectUnauthorized: false });
      await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.destroy();
      return fingerprint;
    };
    const fingerprintOf = (pem: string) => new X509Certificate(pem).fingerprint256;
    t.equal(await served(), fingerprintOf(certificates[0].cert));
    writeFileSync(certFile, certificates[1].cert);
    writeFileSync(keyFile, certificates[1].key);
    const before = read(log).length;
    node.kill('SIGHUP');
    await eventually('reloaded', () => /configuration reloaded.*certificate/.test(read(log).slice(before)), WAIT_MS);
    t.equal(await served(), fingerprintOf(certificates[1].cert), 'the new certificate, without a restart');
  });

  await t.test('a configuration with errors is refused and the running one kept', async (t) => {
    writeFileSync(configFile, [...base, '--max-auth-failures = many'].join('\n') + '\n');
    const before = read(log).length;
    node.kill('SIGHUP');
    await eventually('the refusal is logged', () => /reload refused/.test(read(log).slice(before)), WAIT_MS);
    t.match(read(log).slice(before), /max-auth-failures/, 'naming the key');
    t.equal(node.exitCode, null, 'still running');
  });

  await t.test('SIGTERM stops the node cleanly, and its last lines reach the file', async (t) => {
    node.kill('SIGTERM');
    const { code } = await exited;
    t.equal(code, 0);
    t.match(read(log), /node stopped/);
    t.notMatch(output, /Error/, 'nothing went wrong on the console');
  });
});
