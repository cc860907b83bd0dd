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

/** What a connection's reading can be stopped or started on: its current socket, or WebSocket. */
export interface Readable {
  pause(): void;
  resume(): void;
  readonly destroyed?: boolean;
}

/**
 * Whether a client connection reads, for both reasons it may not: its byte rate (ReadRate) and the
 * node holding every client (ArchiveBacklog). It reads when neither applies. The stream is asked
 * for at each change, so after STARTTLS a throttle that began on the plain socket ends on the TLS
 * one, and the budget goes on counting across the upgrade.
 */
export class ReadGate {
  private readonly rate?: ReadRate;
  private throttle?: NodeJS.Timeout;
  private heldByNode = false;

  /** `bytesPerSecond`: as ReadRate's (absent: no byte rate). */
  constructor(private readonly stream: () => Readable, bytesPerSecond?: () => number) {
    if (bytesPerSecond) this.rate = new ReadRate(bytesPerSecond);
  }

  /** True while the node holds the connection (the keepalive waits: pongs are not read). */
  get held(): boolean {
    return this.heldByNode;
  }

  /** Counts bytes just read; over the budget, reading stops until it is back. */
  received(bytes: number): void {
    const wait = this.rate?.take(bytes) ?? 0;
    if (wait <= 0 || this.throttle) return;
    this.throttle = setTimeout(() => {
      this.throttle = undefined;
      this.apply();
    }, wait).unref();
    this.apply();
  }

  /** The node holds (true) or releases (false) the connection; false when that changes nothing. */
  hold(held: boolean): boolean {
    if (held === this.heldByNode) return false;
    this.heldByNode = held;
    this.apply();
    return true;
  }

  /** Puts the current stream in the state the reasons ask for (also on a new socket: STARTTLS). */
  apply(): void {
    const stream = this.stream();
    if (stream.destroyed) return;
    if (this.heldByNode || this.throttle) stream.pause();
    else stream.resume();
  }
}
