import { normaliseAddress } from '../net-address';

/**
 * Connection limits per client address on this node (DESIGN: abuse limits): how many connections
 * one address may hold open, and how fast it may open new ones (a token bucket: five seconds'
 * worth at once, then `ratePerSecond`). Exempt addresses (by default loopback: the node's own
 * tools, a local balancer without the PROXY protocol) are never limited.
 */
export class AddressLimits {
  private readonly open = new Map<string, number>();
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly sweep: NodeJS.Timeout;
  private readonly exempt: ReadonlySet<string>;

  constructor(private readonly limits: () => { maxPerAddress: number; ratePerSecond: number }, exempt: Iterable<string> = []) {
    this.exempt = new Set([...exempt].map(normaliseAddress));
    // Full buckets of addresses gone quiet are forgotten, so the map stays as big as the active set.
    this.sweep = setInterval(() => this.forgetIdle(), 60_000);
    this.sweep.unref();
  }

  /**
   * A new connection from `address`: a release function for when it closes, or why it is refused.
   * A limit of 0 turns that check off.
   */
  admit(address: string): { release: () => void } | { refused: string } {
    if (this.exempt.has(normaliseAddress(address))) return { release: () => undefined };
    const { maxPerAddress, ratePerSecond } = this.limits();
    const open = this.open.get(address) ?? 0;
    if (maxPerAddress > 0 && open >= maxPerAddress) return { refused: `more than ${maxPerAddress} connections from ${address}` };
    if (ratePerSecond > 0 && !this.take(address, ratePerSecond)) return { refused: `more than ${ratePerSecond} new connections a second from ${address}` };
    this.open.set(address, open + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        const left = (this.open.get(address) ?? 1) - 1;
        if (left > 0) this.open.set(address, left);
        else this.open.delete(address);
      },
    };
  }

  stop(): void {
    clearInterval(this.sweep);
  }

  /** One token of the address's bucket (burst: five seconds' worth), if it has one. */
  private take(address: string, rate: number): boolean {
    const burst = rate * BURST_SECONDS;
    const now = Date.now();
    const bucket = this.buckets.get(address) ?? { tokens: burst, at: now };
    bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * rate);
    bucket.at = now;
    this.buckets.set(address, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  private forgetIdle(): void {
    const { ratePerSecond } = this.limits();
    const now = Date.now();
    for (const [address, bucket] of this.buckets) {
      if (bucket.tokens + ((now - bucket.at) / 1000) * ratePerSecond >= ratePerSecond * BURST_SECONDS) this.buckets.delete(address);
    }
  }
}

/** A bucket holds this many seconds of the rate: the burst an address may open at once [5]. */
const BURST_SECONDS = 5;

