import { fork } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { loadOrCreateCertificate } from '../../server/tls';

/**
 * What Node's own TLS costs per connection, as the floor under the server's memory figure: a bare
 * server (a child process of this script) takes plain connections and upgrades them with a
 * TLSSocket, as STARTTLS does, with the certificate our nodes generate. Measured like the server:
 * resident memory growth from `count` open connections to twice that. Two cases: connections that
 * exchanged nothing after the handshake, and connections to which the server sent one flush of
 * `flushBytes` (our stream features after STARTTLS take about 1.2 KB): Node's encrypted-output
 * buffer starts at 1 KiB and, once a flush outgrows it, keeps a further 16 KiB for good.
 *
 *   node dist/scripts/bench/tls-floor.js [count]
 */

export interface TlsFloor {
  /** KB per connection that did nothing after its handshake. */
  atRest: number;
  /** KB per connection after one server flush of flushBytes. */
  afterFlush: number;
  flushBytes: number;
}

export async function nodeTlsFloor(dataDir: string, count = 1000, flushBytes = 1200): Promise<TlsFloor> {
  const atRest = await measure(dataDir, count, 0);
  const afterFlush = await measure(dataDir, count, flushBytes);
  return { atRest, afterFlush, flushBytes };
}

async function measure(dataDir: string, count: number, flushBytes: number): Promise<number> {
  const child = fork(__filename, ['--serve', dataDir, String(flushBytes)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once('message', (m) => resolve((m as { port: number }).port));
      child.once('exit', (code) => reject(new Error(`TLS floor server exited with ${code}`)));
    });
    const rss = () => new Promise<number>((resolve) => {
      child.once('message', (m) => resolve((m as { rss: number }).rss));
      child.send('rss');
    });
    const sockets: tls.TLSSocket[] = [];
    const open = async (n: number) => {
      for (let i = 0; i < n; i += 50) {
        await Promise.all(Array.from({ length: Math.min(50, n - i) }, () => upgradeOne(port, flushBytes).then((s) => sockets.push(s))));
      }
    };
    await open(count);
    await settle();
    const before = await rss();
    await open(count);
    await settle();
    const after = await rss();
    for (const socket of sockets) socket.destroy();
    return Math.round((after - before) / count / 1024);
  } finally {
    child.kill();
  }
}

/** One client: plain connect, "go" from the server, TLS on the same socket, then what the server sends. */
function upgradeOne(port: number, flushBytes: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const plain = net.connect(port, '127.0.0.1');
    plain.once('error', reject);
    plain.once('data', () => {
      const secure = tls.connect({ socket: plain, rejectUnauthorized: false, servername: 'localhost' });
      secure.once('error', reject);
      let received = 0;
      secure.on('data', (d: Buffer) => {
        received += d.length;
        if (received >= Math.max(1, flushBytes)) resolve(secure);
      });
    });
  });
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 2000));

/** The child: a bare STARTTLS-style server that reports its resident memory when asked. */
async function serve(dataDir: string, flushBytes: number): Promise<void> {
  const { cert, key } = await loadOrCreateCertificate({ dataDir, hosts: ['localhost'] });
  const context = tls.createSecureContext({ cert, key });
  const held: tls.TLSSocket[] = [];
  const server = net.createServer((plain) => {
    const secure = new tls.TLSSocket(plain, { isServer: true, secureContext: context });
    secure.once('secure', () => secure.write(flushBytes > 0 ? 'x'.repeat(flushBytes) : '.'));
    secure.on('data', () => undefined);
    secure.on('error', () => undefined);
    held.push(secure);
    plain.write('go');
  });
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as net.AddressInfo).port }));
  process.on('message', () => process.send!({ rss: process.memoryUsage().rss }));
}

if (require.main === module) {
  if (process.argv[2] === '--serve') {
    void serve(process.argv[3], Number(process.argv[4]));
  } else {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tls-floor-'));
    nodeTlsFloor(dir, Number(process.argv[2] ?? 1000)).then((floor) => {
      console.log(`Node's own TLS: ${floor.atRest} KB per connection at rest, ${floor.afterFlush} KB after one ${floor.flushBytes}-byte flush`);
      process.exit(0);
    }, (err) => {
      console.error(err);
      process.exit(1);
    });
  }
}
