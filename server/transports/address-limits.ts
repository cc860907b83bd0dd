import { normaliseAddress } from '../net-address';

/**
 * One busy client address as a node reports it to the others: connections open, those of them not
 * logged in yet, and connections opened since its last report.
 */
export interface AddressReport {
  address: string;
  open: number;
  waiting: number;
  opened: number;
}

/** The limits an AddressLimits applies (read at each use: a reload may change them); 0 turns one off. */
export interface AddressLimitValues {
  /** Connections open at once (--max-connections-per-ip). */
  maxPerAddress: number;
  /** Connections open at once that have not logged in yet (--max-unauthenticated-per-ip). */
  maxWaitingPerAddress: number;
  /** New connections a second (--connection-rate-per-ip). */
  ratePerSecond: number;
}

/** A connection admit() let in: release() when it closes, authenticated() once its client logged in. */
export interface Admitted {
  release(): void;
  authenticated(): void;
}

/**
 * Connection limits per client address (DESIGN: abuse limits): how many connections one address
 * may hold open, how many of them may wait to log in (sockets held open without authenticating
 * cost a server most), and how fast it may open new ones (a token bucket: five seconds' worth at
 * once, then `ratePerSecond`). In a cluster they count over every node (a per-node limit is bypassed by
 * spreading connections over the nodes): each node reports its busy addresses to the others every
 * second (report / peerReport), and admit() adds what the peers hold open and open a second to its
 * own. Exempt addresses (by default loopback: the node's own tools, a local balancer without the
 * PROXY protocol) are never limited.
 */
export class AddressLimits {
  private readonly open = new Map<string, number>();
  /** Open connections per address that have not authenticated yet. */
  private readonly waiting = new Map<string, number>();
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  /** Connections admitted per address since the last report. */
  private readonly opened = new Map<string, number>();
  /** The last report of each peer: address -> connections open there, and waiting to log in. */
  private readonly peers = new Map<string, Map<string, { open: number; waiting: number }>>();
  private readonly sweep: NodeJS.Timeout;
  private readonly exempt: ReadonlySet<string>;

  constructor(private readonly limits: () => AddressLimitValues, exempt: Iterable<string> = []) {
    this.exempt = new Set([...exempt].map(normaliseAddress));
    // Full buckets of addresses gone quiet are forgotten, so the map stays as big as the active set.
    this.sweep = setInterval(() => this.forgetIdle(), 60_000);
    this.sweep.unref();
  }

  /**
   * A new connection from `client`: its handle, or why it is refused. It counts as waiting to log
   * in until authenticated() (or its release).
   */
  admit(client: string): Admitted | { refused: string } {
    const address = normaliseAddress(client);
    if (this.exempt.has(address)) return { release: () => undefined, authenticated: () => undefined };
    const { maxPerAddress, maxWaitingPerAddress, ratePerSecond } = this.limits();
    const open = this.open.get(address) ?? 0;
    const waiting = this.waiting.get(address) ?? 0;
    const elsewhere = this.elsewhere(address);
    const where = (count: number) => (count > 0 ? ' (on all cluster nodes)' : '');
    if (maxPerAddress > 0 && open + elsewhere.open >= maxPerAddress) {
      return { refused: `more than ${maxPerAddress} connections from ${address}${where(elsewhere.open)}` };
    }
    if (maxWaitingPerAddress > 0 && waiting + elsewhere.waiting >= maxWaitingPerAddress) {
      return { refused: `more than ${maxWaitingPerAddress} connections from ${address} waiting to log in${where(elsewhere.waiting)}` };
    }
    if (ratePerSecond > 0 && !this.take(address, ratePerSecond)) {
      return { refused: `more than ${ratePerSecond} new connections a second from ${address}` };
    }
    add(this.open, address, 1);
    add(this.waiting, address, 1);
    add(this.opened, address, 1);
    let released = false;
    let authenticated = false;
    return {
      authenticated: () => {
        if (released || authenticated) return;
        authenticated = true;
        add(this.waiting, address, -1);
      },
      release: () => {
        if (released) return;
        released = true;
        add(this.open, address, -1);
        if (!authenticated) add(this.waiting, address, -1);
      },
    };
  }

  /**
   * The addresses worth telling the other nodes about (and the counts of opened start afresh):
   * those holding or opening enough to matter against a limit shared by `nodes` nodes, a
   * quarter of an even share or more. Quiet addresses (nearly every user) are never sent.
   */
  report(nodes: number): AddressReport[] {
    const { maxPerAddress, maxWaitingPerAddress, ratePerSecond } = this.limits();
    const share = (limit: number) => (limit > 0 ? Math.max(1, Math.ceil(limit / (4 * Math.max(1, nodes)))) : Infinity);
    const [openAtLeast, waitingAtLeast, openedAtLeast] = [share(maxPerAddress), share(maxWaitingPerAddress), share(ratePerSecond)];
    const reports: AddressReport[] = [];
    for (const address of new Set([...this.open.keys(), ...this.opened.keys()])) {
      const open = this.open.get(address) ?? 0;
      const waiting = this.waiting.get(address) ?? 0;
      const opened = this.opened.get(address) ?? 0;
      if (open >= openAtLeast || waiting >= waitingAtLeast || opened >= openedAtLeast) reports.push({ address, open, waiting, opened });
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
    const addresses = new Map<string, { open: number; waiting: number }>();
    for (const report of reports) {
      const address = normaliseAddress(report.address);
      addresses.set(address, { open: report.open, waiting: report.waiting });
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

  /** What the peers last reported of `address`, summed. */
  private elsewhere(address: string): { open: number; waiting: number } {
    const sum = { open: 0, waiting: 0 };
    for (const addresses of this.peers.values()) {
      const counts = addresses.get(address);
      if (counts) {
        sum.open += counts.open;
        sum.waiting += counts.waiting;
      }
    }
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

/** Adds `delta` to a count; a count that reaches 0 is removed, so maps stay as big as the active set. */
function add(counts: Map<string, number>, key: string, delta: number): void {
  const value = (counts.get(key) ?? 0) + delta;
  if (value > 0) counts.set(key, value);
  else counts.delete(key);
}

/** A bucket holds this many seconds of the rate: the burst an address may open at once [5]. */
const BURST_SECONDS = 5;

