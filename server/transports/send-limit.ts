import { StreamError } from '../errors';

/**
 * How much a client connection may leave unread (--client-send-queue): what the server wrote to it
 * that the kernel has not taken yet, because the client reads slower than it is sent to, or not at
 * all. Past the limit the stream is closed with policy-violation instead of holding ever more
 * memory for it. The session then ends as on any stream error: with XEP-0198 its unacknowledged
 * stanzas are handled as undelivered (other resources, offline storage), never dropped.
 *
 * Checked after each write, at the end of the turn (the writes of one turn are counted together,
 * and nobody's delivery is interrupted halfway).
 */
export class SendLimit {
  private checking = false;

  /**
   * `waiting()`: the bytes written and not yet taken by the kernel; `limit()` is read at each check
   * (SIGHUP may change it), 0 turning it off; `overflow` closes the stream.
   */
  constructor(
    private readonly waiting: () => number,
    private readonly limit: () => number,
    private readonly overflow: (error: StreamError) => void,
  ) {}

  /** After a write. */
  wrote(): void {
    if (this.checking || !this.over()) return;
    this.checking = true;
    setImmediate(() => {
      this.checking = false;
      if (!this.over()) return;
      const kib = Math.round(this.waiting() / 1024);
      this.overflow(new StreamError('policy-violation', `the client has not read ${kib} KiB sent to it (more than --client-send-queue ${this.limit()} bytes)`));
    });
  }

  private over(): boolean {
    const limit = this.limit();
    return limit > 0 && this.waiting() > limit;
  }
}
