/**
 * The TLS certificate: the admin's PEM files, or a self-signed one generated on first start
 * under `<data-dir>/tls/` and reused on every later start.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { generate as generateSelfSigned } from 'selfsigned';
import type { Logger } from './log';

export interface CertificateOptions {
  /** PEM certificate (chain) file; with keyFile, used as is. */
  certFile?: string;
  /** PEM private key file. */
  keyFile?: string;
  /** Folder holding tls/cert.pem and tls/key.pem when no files are given. */
  dataDir: string;
  /** Served domains; the first is the CN, each gets a DNS name and a wildcard for components. */
  hosts: string[];
  logger?: Logger;
}

export interface Certificate {
  cert: string;
  key: string;
  /** True when this call generated the self-signed certificate. */
  generated: boolean;
}

/** Validity of a generated certificate [10 years]. */
const GENERATED_VALIDITY_YEARS = 10;
/** RSA key size of a generated certificate [2048 bits]. */
const GENERATED_KEY_BITS = 2048;

/** Reads the configured certificate, or reuses/generates the self-signed one. */
export async function loadOrCreateCertificate(opts: CertificateOptions): Promise<Certificate> {
  if (opts.certFile !== undefined || opts.keyFile !== undefined) {
    if (opts.certFile === undefined || opts.keyFile === undefined) {
      throw new Error('TLS: --tls-cert and --tls-key must be given together');
    }
    const cert = await readPem(opts.certFile, 'certificate');
    const key = await readPem(opts.keyFile, 'private key');
    checkPair(cert, key, opts.certFile, opts.keyFile, opts.logger);
    return { cert, key, generated: false };
  }

  if (opts.hosts.length === 0) throw new Error('TLS: no host names to generate a certificate for');
  const dir = path.join(opts.dataDir, 'tls');
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  const existing = await readGenerated(dir, certFile, keyFile);
  if (existing) {
    checkPair(existing.cert, existing.key, certFile, keyFile, opts.logger);
    warnUncoveredHosts(existing.cert, opts.hosts, certFile, opts.logger);
    return { ...existing, generated: false };
  }

  const fresh = await generate(opts.hosts);
  const won = await publish(opts.dataDir, dir, fresh);
  if (!won) {
    // Another node process on this machine generated it at the same moment: use theirs.
    const theirs = await readGenerated(dir, certFile, keyFile);
    if (!theirs) throw new Error(`TLS: ${dir} exists but holds no cert.pem and key.pem; remove it to generate a certificate`);
    return { ...theirs, generated: false };
  }
  opts.logger?.info('generated a self-signed TLS certificate; clients will warn until a real one is configured (--tls-cert, --tls-key)', {
    file: certFile,
    hosts: opts.hosts.join(','),
  });
  return { ...fresh, generated: true };
}

async function readPem(file: string, what: 'certificate' | 'private key'): Promise<string> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new Error(`TLS: cannot read ${what} ${file}: ${(err as Error).message}`);
  }
  const marker = what === 'certificate' ? /-----BEGIN CERTIFICATE-----/ : /-----BEGIN ([A-Z]+ )?PRIVATE KEY-----/;
  if (!marker.test(text)) throw new Error(`TLS: ${file} is not a PEM ${what}`);
  return text;
}

/** Fails clearly when the files do not parse or the key does not belong to the certificate. */
function checkPair(cert: string, key: string, certFile: string, keyFile: string, logger?: Logger): void {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new Error(`TLS: ${certFile} is not a valid PEM certificate: ${(err as Error).message}`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new Error(`TLS: ${keyFile} is not a valid PEM private key: ${(err as Error).message}`);
  }
  if (!x509.checkPrivateKey(privateKey)) throw new Error(`TLS: ${keyFile} is not the private key of ${certFile}`);
  if (new Date(x509.validTo).getTime() < Date.now()) {
    logger?.warn('the TLS certificate has expired; clients will refuse it', { file: certFile, validTo: x509.validTo });
  }
}

function warnUncoveredHosts(cert: string, hosts: string[], certFile: string, logger?: Logger): void {
  if (!logger) return;
  const x509 = new X509Certificate(cert);
  const missing = hosts.filter((h) => x509.checkHost(h) === undefined);
  if (missing.length > 0) {
    logger.warn('the generated TLS certificate does not name every virtual host; delete its folder to generate a new one', {
      file: certFile,
      missing: missing.join(','),
    });
  }
}

/** Both generated files, or undefined when neither exists; one without the other is an error. */
async function readGenerated(dir: string, certFile: string, keyFile: string): Promise<Omit<Certificate, 'generated'> | undefined> {
  const [cert, key] = await Promise.all([readIfExists(certFile), readIfExists(keyFile)]);
  if (cert === undefined && key === undefined) return undefined;
  if (cert === undefined || key === undefined) {
    throw new Error(`TLS: ${dir} holds only one of cert.pem and key.pem; delete the folder to generate a new certificate`);
  }
  return { cert, key };
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`TLS: cannot read ${file}: ${(err as Error).message}`);
  }
}

async function generate(hosts: string[]): Promise<Omit<Certificate, 'generated'>> {
  const altNames: { type: 2 | 7; value?: string; ip?: string }[] = [];
  for (const host of hosts) {
    if (net.isIP(host)) {
      altNames.push({ type: 7, ip: host });
      continue;
    }
    // Components are served at <name>.<vhost> (muc.example.com): one wildcard covers them all.
    altNames.push({ type: 2, value: host }, { type: 2, value: `*.${host}` });
    if (host === 'localhost') altNames.push({ type: 7, ip: '127.0.0.1' }, { type: 7, ip: '::1' });
  }
  // Backdated an hour so a peer whose clock is slightly behind does not see "not yet valid".
  const notBeforeDate = new Date(Date.now() - 3600_000);
  const notAfterDate = new Date(notBeforeDate);
  notAfterDate.setFullYear(notAfterDate.getFullYear() + GENERATED_VALIDITY_YEARS);
  const pems = await generateSelfSigned([{ name: 'commonName', value: hosts[0] }], {
    keyType: 'rsa',
    keySize: GENERATED_KEY_BITS,
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
      { name: 'subjectAltName', altNames },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

/**
 * Writes both files into a fresh folder and renames it into place, so no process ever sees a
 * certificate without its key. Returns false when another process's folder got there first.
 */
async function publish(dataDir: string, dir: string, pems: Omit<Certificate, 'generated'>): Promise<boolean> {
  await fs.mkdir(dataDir, { recursive: true });
  const tmp = await fs.mkdtemp(path.join(dataDir, '.tls-'));
  try {
    await fs.chmod(tmp, 0o700);
    await fs.writeFile(path.join(tmp, 'key.pem'), pems.key, { mode: 0o600 });
    await fs.writeFile(path.join(tmp, 'cert.pem'), pems.cert, { mode: 0o644 });
    try {
      await fs.rename(tmp, dir);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST') return false;
      throw new Error(`TLS: cannot create ${dir}: ${(err as Error).message}`);
    }
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}
