import type { Element } from 'ltx';
import { xml } from './server';
import type { XmppClient } from './client';

/** One sender and one receiver: the sender's messages go alternately to the receiver's bare and full JID. */
export interface Pair {
  sender: XmppClient;
  receiver: XmppClient;
  /** The receiver's full JID. */
  to: string;
}

/**
 * Numbered chat traffic between pairs of real clients, and its accounting: every message the
 * server took must end up exactly once as delivered live, delivered from offline storage
 * (XEP-0203 delay 'Offline Storage'), or bounced to its sender with an error.
 */
export class NumberedTraffic {
  readonly sent = new Set<string>();
  readonly live = new Map<string, number>();
  readonly offline = new Map<string, number>();
  readonly bounced = new Map<string, number>();
  private running = false;
  startedAt = 0;
  stoppedAt = 0;

  constructor(private readonly pairs: Pair[]) {
    for (const pair of pairs) this.watchReceiver(pair.receiver);
    for (const pair of pairs) this.watchSender(pair.sender);
  }

  /** Counts what `client` receives as a receiver (also a client that logs in again later). */
  watchReceiver(client: XmppClient): void {
    client.on('stanza', (stanza: Element) => {
      if (!stanza.is('message') || stanza.attrs.type === 'error') return;
      const id = stanza.attrs.id as string | undefined;
      if (!id?.startsWith('n-')) return;
      const stored = stanza.getChildren('delay').some((d) => d.attrs.xmlns === 'urn:xmpp:delay' && d.getText() === 'Offline Storage');
      const into = stored ? this.offline : this.live;
      into.set(id, (into.get(id) ?? 0) + 1);
    });
  }

  private watchSender(client: XmppClient): void {
    client.on('stanza', (stanza: Element) => {
      if (!stanza.is('message') || stanza.attrs.type !== 'error') return;
      const id = stanza.attrs.id as string | undefined;
      if (id?.startsWith('n-')) this.bounced.set(id, (this.bounced.get(id) ?? 0) + 1);
    });
  }

  /**
   * Offers `rate` messages per second in total, round-robin over the pairs, until stop(). The
   * schedule catches up after a late timer, so the offered rate holds on a busy machine.
   */
  start(rate: number): void {
    this.running = true;
    this.startedAt = Date.now();
    let next = 0;
    const tick = () => {
      if (!this.running) return;
      const due = Math.floor(((Date.now() - this.startedAt) * rate) / 1000);
      while (next < due) {
        const pair = this.pairs[next % this.pairs.length];
        const n = next++;
        const id = `n-${n}`;
        const bare = pair.to.slice(0, pair.to.indexOf('/'));
        const to = n % 2 === 0 ? bare : pair.to;
        pair.sender.send(xml('message', { to, type: 'chat', id }, xml('body', {}, `message ${n}`))).then(
          () => this.sent.add(id),
          () => undefined, // not written: the server never took it
        );
      }
      setTimeout(tick, 5);
    };
    tick();
  }

  stop(): void {
    this.running = false;
    this.stoppedAt = Date.now();
  }

  /** Messages sent per second while running. */
  get offeredRate(): number {
    return (this.sent.size * 1000) / Math.max(1, this.stoppedAt - this.startedAt);
  }

  /** Sent messages not (yet) accounted for. */
  unaccounted(): string[] {
    return [...this.sent].filter((id) => !this.live.has(id) && !this.offline.has(id) && !this.bounced.has(id));
  }

  /** The index of the pair that sent message `id`. */
  pairOf(id: string): number {
    return Number(id.slice(2)) % this.pairs.length;
  }

  /** Messages seen more than once, in any combination of live, offline and bounced. */
  duplicates(): string[] {
    return [...this.sent].filter((id) => (this.live.get(id) ?? 0) + (this.offline.get(id) ?? 0) + (this.bounced.get(id) ?? 0) > 1);
  }

  summary(): string {
    const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
    return `sent ${this.sent.size} (${Math.round(this.offeredRate)}/s), live ${sum(this.live)}, offline ${sum(this.offline)}, bounced ${sum(this.bounced)}, unaccounted ${this.unaccounted().length}, duplicates ${this.duplicates().length}`;
  }
}
