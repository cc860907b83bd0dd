import { normaliseAddress } from '../net-address';

/** One busy client address as a node reports it to the others: connections open, and opened since its last report. */
export interface AddressReport {
  address: string;
  open: number;
  opened: number;
}

/**
 * Connection limits per client address (DESIGN: abuse limits): how many connections one address
 * may hold open, and how fast it may open new ones (a token bucket: five seconds' worth at once,
 * then `ratePerSecond`). In a cluster both count over every node (a per-node limit is bypassed by
 * spreading connections over the nodes): each node reports its busy addresses to the others every
 * second (report / peerReport), and admit() adds what the peers hold open and open a second to its
 * own. Exempt addresses (by default loopback: the node's own tools, a local balancer without the
 * PROXY protocol) are never limited.
 */
export class AddressLimits {
  private readonly open = new Map<string, number>();
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  /** Connections admitted per address since the last report. */
  private readonly opened = new Map<string, number>();
  /** The last report of each peer: address -> connections open there. */
  private readonly peers = new Map<string, Map<string, number>>();
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
  admit(client: string): { release: () => void } | { refused: string } {
    const address = normaliseAddress(client);
    if (this.exempt.has(address)) return { release: () => undefined };
    const { maxPerAddress, ratePerSecond } = this.limits();
    const open = this.open.get(address) ?? 0;
    const elsewhere = this.openElsewhere(address);
    if (maxPerAddress > 0 && open + elsewhere >= maxPerAddress) {
      return { refused: `more than ${maxPerAddress} connections from ${address}${elsewhere > 0 ? ' (on all cluster nodes)' : ''}` };
    }
    if (ratePerSecond > 0 && !this.take(address, ratePerSecond)) {
      return { refused: `more than ${ratePerSecond} new connections a second from ${address}` };
    }
    this.open.set(address, open + 1);
    this.opened.set(address, (this.opened.get(address) ?? 0) + 1);
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

  /**
   * The addresses worth telling the other nodes about (and the counts of opened start afresh):
   * those holding or opening enough to matter against a limit shared by `nodes` nodes, a
   * quarter of an even share or more. Quiet addresses (nearly every user) are never sent.
   */
  report(nodes: number): AddressReport[] {
    const { maxPerAddress, ratePerSecond } = this.limits();
    const share = (limit: number) => (limit > 0 ? Math.max(1, Math.ceil(limit / (4 * Math.max(1, nodes)))) : Infinity);
    const [openAtLeast, openedAtLeast] = [share(maxPerAddress), share(ratePerSecond)];
    const reports: AddressReport[] = [];
    for (const address of new Set([...this.open.keys(), ...this.opened.keys()])) {
      const open = this.open.get(address) ?? 0;
      const opened = this.opened.get(address) ?? 0;
      if (open >= openAtLeast || opened >= openedAtLeast) reports.push({ address, open, opened });
    }
    this.opened.clear();
    return reports;
  }

  /**
   * A peer's busy addresses, replacing what it reported before. What they opened there is taken
   * from their buckets here too, so each node's bucket follows the address over the whole cluster.
   */
  peerReport(node: string, reports: AddressReport[]): void {
    const { ratePerSecond } = this.limits();
    const addresses = new Map<string, number>();
    for (const report of reports) {
      const address = normaliseAddress(report.address);
      addresses.set(address, report.open);
      if (ratePerSecond > 0 && report.opened > 0) this.debit(address, ratePerSecond, report.opened);
    }
    this.peers.set(node, addresses);
  }

  /** A peer is gone: its connections are too. */
  peerGone(node: string): void {
    this.peers.delete(node);
  }

  stop(): void {
    clearInterval(this.sweep);
  }

  private openElsewhere(address: string): number {
    let sum = 0;
    for (const addresses of this.peers.values()) sum += addresses.get(address) ?? 0;
    return sum;
  }

  /** Takes `count` tokens for connections opened on other nodes; the bucket may go down to minus one burst. */
  private debit(address: string, rate: number, count: number): void {
    const bucket = this.refill(address, rate);
    bucket.tokens = Math.max(-rate * BURST_SECONDS, bucket.tokens - count);
  }

  /** The address's bucket, filled for the time since it was last used. */
  private refill(address: string, rate: number): { tokens: number; at: number } {
    const burst = rate * BURST_SECONDS;
    const now = Date.now();
    const bucket = this.buckets.get(address) ?? { tokens: burst, at: now };
    bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * rate);
    bucket.at = now;
    this.buckets.set(address, bucket);
    return bucket;
  }

  /** One token of the address's bucket (burst: five seconds' worth), if it has one. */
  private take(address: string, rate: number): boolean {
    const bucket = this.refill(address, rate);
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

