import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * Ports for servers a test starts, from a range the kernel never hands out on its own (Linux's
 * ephemeral range is 32768-60999): a port taken with `listen(0)` and closed again could meanwhile
 * become the local port of any outgoing connection, or another test's `listen(0)`. Test processes
 * running side by side share the range through lease files, one per port, holding the owner's pid;
 * a process's leases are removed when it exits. [10000-29999]
 */
const FIRST = 10000;
const COUNT = 20000;
const LEASES = path.join(os.tmpdir(), 'xmpp-test-ports');
/** Lease files of processes that died without removing them are reclaimed after this long [1 hour]. */
const STALE_MS = 3_600_000;

const mine: string[] = [];
let cleanupRegistered = false;

/** A free port leased to this process until it exits: never handed out twice, in or across processes. */
export async function freePort(): Promise<number> {
  return freePortRange(1);
}

/** `count` consecutive free ports (for a server that takes base + k), leased the same way; returns the first. */
export async function freePortRange(count: number): Promise<number> {
  mkdirSync(LEASES, { recursive: true });
  if (!cleanupRegistered) {
    cleanupRegistered = true;
    process.once('exit', () => {
      for (const file of mine) {
        try {
          unlinkSync(file);
        } catch {
          // already gone
        }
      }
    });
    reclaimStale();
  }
  for (let attempt = 0; attempt < 1000; attempt++) {
    const first = FIRST + Math.floor(Math.random() * (COUNT - count + 1));
    const ports = Array.from({ length: count }, (_, k) => first + k);
    if (!ports.every(lease)) continue; // another test process holds one (what was leased stays unused)
    // Something outside the tests may listen there (leases keep test processes apart, not others).
    if ((await Promise.all(ports.map(canListen))).every(Boolean)) return first;
  }
  throw new Error(`no ${count} free port(s) found in ${FIRST}-${FIRST + COUNT - 1} (leases in ${LEASES})`);
}

function lease(port: number): boolean {
  const file = path.join(LEASES, String(port));
  let fd: number;
  try {
    fd = openSync(file, 'wx');
  } catch {
    return false;
  }
  writeSync(fd, String(process.pid));
  closeSync(fd);
  mine.push(file);
  return true;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

/** Leases left by killed test processes (tap's timeout): their owner is gone and they are old. */
function reclaimStale(): void {
  for (const name of readdirSync(LEASES)) {
    const file = path.join(LEASES, name);
    try {
      if (Date.now() - statSync(file).mtimeMs < STALE_MS) continue;
      const owner = Number(readFileSync(file, 'utf8'));
      if (owner > 0 && processAlive(owner)) continue;
      unlinkSync(file);
    } catch {
      // taken or removed meanwhile
    }
  }
}

/** Whether process `pid` exists (one of another user counts). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
