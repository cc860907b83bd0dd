import { pbkdf2Sync } from 'node:crypto';
import { closeSync, fdatasyncSync, openSync, rmSync, writeSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { percentile } from './nodes';

/** What hostSpeed() measured: lower is faster in each. */
export interface HostSpeed {
  /** Milliseconds for a fixed piece of CPU work in this process (PBKDF2-SHA-256 of 20,000 iterations, sorting 100,000 numbers). */
  cpuMs: number;
  /** Round trip of 100 bytes over a loopback TCP connection within this process, µs: median and 99th percentile of 2,000. */
  loopbackUs: { p50: number; p99: number };
  /** Writing 4 KB to a file and fdatasync(), µs: median of 50 (what a database commit waits for). */
  syncWriteUs: number;
}

/**
 * How fast the host is right now. On a shared virtual machine the same work took from 1× to 3× as
 * long within one day, and the latency figures moved with it; a load average does not show it.
 * The CPU work alone did not either: the server's cost is mostly in the kernel (sockets, TLS
 * records, the archive's file writes), so the probe times a loopback round trip and a synced
 * write too. Each part takes the median of several tries, so one stall does not decide it.
 */
export async function hostSpeed(): Promise<HostSpeed> {
  const times: number[] = [];
  for (let k = 0; k < 5; k++) {
    const started = performance.now();
    pbkdf2Sync('host speed', 'probe', 20_000, 32, 'sha256');
    Array.from({ length: 100_000 }, (_, i) => (i * 7919) % 100_003).sort((a, b) => a - b);
    times.push(performance.now() - started);
  }
  const loopback = await loopbackRoundTrips(2000);
  const writes: number[] = [];
  // On the file system the benchmark's databases use (the temporary directory), removed after.
  const file = path.join(os.tmpdir(), `xmpp-host-speed-${process.pid}.probe`);
  const fd = openSync(file, 'w');
  try {
    const page = Buffer.alloc(4096, 1);
    for (let k = 0; k < 50; k++) {
      const started = performance.now();
      writeSync(fd, page, 0, page.length, (k % 8) * page.length);
      fdatasyncSync(fd);
      writes.push((performance.now() - started) * 1000);
    }
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
  const sorted = (values: number[]) => values.sort((a, b) => a - b);
  return {
    cpuMs: Math.round(percentile(sorted(times), 50) * 10) / 10,
    loopbackUs: { p50: Math.round(percentile(loopback, 50)), p99: Math.round(percentile(loopback, 99)) },
    syncWriteUs: Math.round(percentile(sorted(writes), 50)),
  };
}

/** `count` round trips of 100 bytes, one at a time, over a TCP connection to an echo server in this process (µs, sorted). */
async function loopbackRoundTrips(count: number): Promise<number[]> {
  const server = net.createServer((socket) => socket.on('data', (data) => socket.write(data)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const socket = net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, noDelay: true });
  await new Promise((resolve) => socket.once('connect', resolve));
  const payload = Buffer.alloc(100, 0x61);
  const rtts: number[] = [];
  try {
    for (let k = 0; k < count; k++) {
      const started = performance.now();
      let got = 0;
      await new Promise<void>((resolve) => {
        const onData = (data: Buffer) => {
          got += data.length;
          if (got < payload.length) return;
          socket.off('data', onData);
          resolve();
        };
        socket.on('data', onData);
        socket.write(payload);
      });
      rtts.push((performance.now() - started) * 1000);
    }
  } finally {
    socket.destroy();
    server.close();
  }
  return rtts.sort((a, b) => a - b);
}
