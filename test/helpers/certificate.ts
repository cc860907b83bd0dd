import { copyFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadOrCreateCertificate } from '../../server/tls';

/** Where generated test certificates are kept between test processes, one folder per host list. */
const CACHE = path.join(os.tmpdir(), 'xmpp-test-certificates');

/**
 * Puts a self-signed certificate for `hosts` into `dataDir`/tls/, where a node looks for the one it
 * generated on an earlier start, so test servers skip the RSA key generation (a few hundred ms of
 * CPU each). The certificate is the node's own kind, made once per machine by the node's code
 * (which settles two processes generating at once) and reused.
 */
export async function seedTestCertificate(dataDir: string, hosts: string[]): Promise<void> {
  const cacheDir = path.join(CACHE, hosts.map((h) => h.replace(/[^a-zA-Z0-9.-]/g, '_')).join('+'));
  await loadOrCreateCertificate({ dataDir: cacheDir, hosts });
  const target = path.join(dataDir, 'tls');
  mkdirSync(target, { recursive: true });
  for (const file of ['cert.pem', 'key.pem']) copyFileSync(path.join(cacheDir, 'tls', file), path.join(target, file));
}
