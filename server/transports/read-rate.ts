/**
 * How fast one client connection may send (DESIGN: abuse limits; Prosody's mod_limits is the
 * anchor): a token bucket of bytes holding five seconds' worth, refilled at the rate. A connection
 * over its budget is not closed: its transport stops reading for as long as the bucket needs to
 * refill, so TCP flow control slows the client down and nothing it sent is lost.
 */
export class ReadRate {
  private tokens: number;
  private at = Date.now();

  /** `bytesPerSecond()` is read at each call (SIGHUP may change it); 0 turns the limit off. */
  constructor(private readonly bytesPerSecond: () => number) {
    this.tokens = bytesPerSecond() * BURST_SECONDS;
  }

  /** Counts `bytes` just received; milliseconds to stop reading for, 0 when within the budget. */
  take(bytes: number): number {
    const rate = this.bytesPerSecond();
    if (rate <= 0) return 0;
    const now = Date.now();
    this.tokens = Math.min(rate * BURST_SECONDS, this.tokens + ((now - this.at) / 1000) * rate);
    this.at = now;
    this.tokens -= bytes;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / rate) * 1000);
  }
}

/** A connection may send this many seconds' worth at once [5]. */
const BURST_SECONDS = 5;
