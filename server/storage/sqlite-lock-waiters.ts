/**
 * How many of this process's main-thread SQLite statements are waiting for the write lock. The
 * main thread never waits synchronously (sqlite-client.ts retries a busy statement from a timer),
 * so on its own it would poll between the archive writer thread's transactions and, with that
 * thread committing back to back under load, could miss every gap. The thread reads this count
 * before each transaction and lets the waiting statements go first (sqlite-archive-writer.ts).
 */
export const mainThreadWaiting = new Int32Array(new SharedArrayBuffer(4));

/** A main-thread statement found the write lock taken and will try again. */
export function waitingForLock(): void {
  Atomics.add(mainThreadWaiting, 0, 1);
}

/** That statement ran, or gave up: a writer that was letting it go first may carry on. */
export function doneWaiting(): void {
  Atomics.sub(mainThreadWaiting, 0, 1);
  Atomics.notify(mainThreadWaiting, 0);
}
