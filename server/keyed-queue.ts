/**
 * Runs tasks one after another per key, in the order they were queued; different keys run in
 * parallel. A task runs even when the one before it failed. Keys with nothing queued hold no
 * memory. Used wherever order per entity matters: a room's stanzas, a pubsub node's operations,
 * deliveries from one cluster peer.
 */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<void>>();

  run<T>(key: string, task: () => T | Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    return this.track(key, previous.then(task));
  }

  /**
   * Like run(), but when nothing is queued for the key the task runs at once, synchronously, and
   * its result is returned as it is (a promise only if the task returned one). Cluster deliveries
   * use it so that a chunk of routed stanzas is handled, and acknowledged, before the tick ends.
   */
  runOrNow<T>(key: string, task: () => T | Promise<T>): T | Promise<T> {
    if (this.tails.has(key)) return this.run(key, task);
    const result = task();
    return result instanceof Promise ? this.track(key, result) : result;
  }

  /** Makes `result` the key's tail until it settles. */
  private track<T>(key: string, result: Promise<T>): Promise<T> {
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** Resolves once everything queued so far has run. */
  async idle(): Promise<void> {
    await Promise.all([...this.tails.values()]);
  }
}
