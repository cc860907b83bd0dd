import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { AddressInfo } from 'node:net';
import { Logger, LogMeta, silentLogger } from '../../server/log';
import { loadOrCreateCertificate } from '../../server/tls';

/** A logger that remembers its warn and info lines. */
function recordingLogger() {
  const lines: { level: string; message: string; meta?: LogMeta }[] = [];
  const log: Logger = {
    ...silentLogger(),
    info: (message, meta) => { lines.push({ level: 'info', message, meta }); },
    warn: (message, meta) => { lines.push({ level: 'warn', message, meta }); },
  };
  return { log, lines };
}

t.test('a self-signed certificate is generated once under <data-dir>/tls and reused', async (t) => {
  const dataDir = path.join(t.testdir({}), 'var');
  const { log, lines } = recordingLogger();
  const first = await loadOrCreateCertificate({ dataDir, hosts: ['example.com', 'localhost'], logger: log });
  t.equal(first.generated, true);
  t.match(lines, [{ level: 'info', message: /generated a self-signed TLS certificate/ }]);
  t.equal(fs.readFileSync(path.join(dataDir, 'tls', 'cert.pem'), 'utf8'), first.cert);
  t.equal(fs.readFileSync(path.join(dataDir, 'tls', 'key.pem'), 'utf8'), first.key);

  const second = await loadOrCreateCertificate({ dataDir, hosts: ['example.com', 'localhost'] });
  t.equal(second.generated, false);
  t.equal(second.cert, first.cert, 'same certificate bytes');
  t.equal(second.key, first.key, 'same key bytes');
  t.same(fs.readdirSync(dataDir), ['tls'], 'no temporary folders left behind');
});

t.test('the generated key file is readable by its owner only', { skip: process.platform === 'win32' }, async (t) => {
  const dataDir = t.testdir({});
  await loadOrCreateCertificate({ dataDir, hosts: ['localhost'] });
  t.equal(fs.statSync(path.join(dataDir, 'tls', 'key.pem')).mode & 0o777, 0o600);
});

t.test('the generated certificate: ECDSA P-256, ten years, CN = first host, names every host and its subdomains', async (t) => {
  const dataDir = t.testdir({});
  const { cert } = await loadOrCreateCertificate({ dataDir, hosts: ['example.com', 'chat.example.org'] });
  const x509 = new X509Certificate(cert);
  t.equal(x509.subject, 'CN=example.com');
  t.equal(x509.publicKey.asymmetricKeyType, 'ec');
  t.equal(x509.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  const years = (Date.parse(x509.validTo) - Date.parse(x509.validFrom)) / (365.25 * 24 * 3600 * 1000);
  t.ok(years > 9.9 && years < 10.1, `valid ${years.toFixed(2)} years`);
  t.ok(Date.parse(x509.validFrom) <= Date.now(), 'already valid');
  for (const host of ['example.com', 'muc.example.com', 'chat.example.org', 'pubsub.chat.example.org']) {
    t.ok(x509.checkHost(host), `covers ${host}`);
  }
  t.notOk(x509.checkHost('example.net'));
});

t.test('the generated certificate loads into a TLS server and completes a handshake', async (t) => {
  const dataDir = t.testdir({});
  const { cert, key } = await loadOrCreateCertificate({ dataDir, hosts: ['localhost'] });
  t.doesNotThrow(() => tls.createSecureContext({ cert, key }));
  const server = tls.createServer({ cert, key }, (socket) => socket.end('hello'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as AddressInfo).port;
  for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
    const received = await new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca: [cert], maxVersion }, () => {
        let text = '';
        socket.on('data', (d: Buffer) => { text += d.toString(); });
        socket.on('end', () => resolve(text));
      });
      socket.on('error', reject);
    });
    t.equal(received, 'hello', `a client trusting the certificate verifies it for localhost (${maxVersion})`);
  }
});

t.test('given cert and key files are read and used as they are', async (t) => {
  const source = t.testdir({});
  const made = await loadOrCreateCertificate({ dataDir: source, hosts: ['example.com'] });
  const dir = t.testdir({ 'fullchain.pem': made.cert, 'privkey.pem': made.key });
  const got = await loadOrCreateCertificate({
    certFile: path.join(dir, 'fullchain.pem'), keyFile: path.join(dir, 'privkey.pem'), dataDir: path.join(dir, 'var'), hosts: ['example.com'],
  });
  t.same(got, { cert: made.cert, key: made.key, generated: false });
  t.notOk(fs.existsSync(path.join(dir, 'var')), 'nothing is generated');
});

t.test('unreadable, non-PEM or mismatched files fail with a clear message', async (t) => {
  const a = await loadOrCreateCertificate({ dataDir: path.join(t.testdir({}), 'a'), hosts: ['a.example'] });
  const dir = t.testdir({ 'cert.pem': a.cert, 'key.pem': a.key, 'junk.pem': 'not a certificate', 'bad.pem': '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' });
  const b = await loadOrCreateCertificate({ dataDir: path.join(dir, 'b'), hosts: ['b.example'] });
  fs.writeFileSync(path.join(dir, 'other-key.pem'), b.key);
  const at = (f: string) => path.join(dir, f);
  await t.rejects(loadOrCreateCertificate({ certFile: at('missing.pem'), keyFile: at('key.pem'), dataDir: dir, hosts: ['x'] }),
    { message: /^TLS: cannot read certificate .*missing\.pem: ENOENT/ });
  await t.rejects(loadOrCreateCertificate({ certFile: at('junk.pem'), keyFile: at('key.pem'), dataDir: dir, hosts: ['x'] }),
    { message: /^TLS: .*junk\.pem is not a PEM certificate$/ });
  await t.rejects(loadOrCreateCertificate({ certFile: at('cert.pem'), keyFile: at('junk.pem'), dataDir: dir, hosts: ['x'] }),
    { message: /^TLS: .*junk\.pem is not a PEM private key$/ });
  await t.rejects(loadOrCreateCertificate({ certFile: at('bad.pem'), keyFile: at('key.pem'), dataDir: dir, hosts: ['x'] }),
    { message: /^TLS: .*bad\.pem is not a valid PEM certificate/ });
  await t.rejects(loadOrCreateCertificate({ certFile: at('cert.pem'), keyFile: at('other-key.pem'), dataDir: dir, hosts: ['x'] }),
    { message: /^TLS: .*other-key\.pem is not the private key of .*cert\.pem$/ });
  await t.rejects(loadOrCreateCertificate({ certFile: at('cert.pem'), dataDir: dir, hosts: ['x'] }),
    { message: 'TLS: --tls-cert and --tls-key must be given together' });
});

t.test('a generated folder holding only one of the two files is reported, not silently replaced', async (t) => {
  const dataDir = t.testdir({ tls: { 'cert.pem': 'x' } });
  await t.rejects(loadOrCreateCertificate({ dataDir, hosts: ['localhost'] }), { message: /holds only one of cert\.pem and key\.pem; delete the folder/ });
});

t.test('a reused certificate that does not name a new virtual host is reported', async (t) => {
  const dataDir = t.testdir({});
  await loadOrCreateCertificate({ dataDir, hosts: ['a.example'] });
  const { log, lines } = recordingLogger();
  const again = await loadOrCreateCertificate({ dataDir, hosts: ['a.example', 'b.example'], logger: log });
  t.equal(again.generated, false);
  t.match(lines, [{ level: 'warn', message: /does not name every virtual host/, meta: { missing: 'b.example' } }]);
});

t.test('two processes generating at once end up with one certificate', async (t) => {
  const dataDir = t.testdir({});
  const [a, b] = await Promise.all([
    loadOrCreateCertificate({ dataDir, hosts: ['localhost'] }),
    loadOrCreateCertificate({ dataDir, hosts: ['localhost'] }),
  ]);
  t.equal(a.cert, b.cert);
  t.equal(a.key, b.key);
  t.equal([a.generated, b.generated].filter(Boolean).length, 1);
  t.equal(fs.readFileSync(path.join(dataDir, 'tls', 'cert.pem'), 'utf8'), a.cert);
});
