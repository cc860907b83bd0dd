import type { Element } from 'ltx';
import type { JID } from '../jid';
import type { StreamError } from '../errors';

/** Where a session's stanzas go: the client stream it belongs to. */
export interface StanzaSink {
  readonly id: string;
  send(element: Element): void;
  /** Writes what send() queued to the socket now (optional; otherwise at the end of the tick). */
  flush?(): void;
  /** Undefined when all that was sent is in the kernel's hands, else a promise of it (optional). */
  whenWritten?(): Promise<void> | undefined;
  close(error?: StreamError): void;
  /**
   * The client is away: its connection dropped and the session waits to be resumed (XEP-0198).
   * Messages a person reads are then stored (durable, shared) rather than held in this process.
   */
  readonly waiting?: boolean;
  /** Where the client is, for operators (admin commands, xmppctl sessions); optional. */
  describe?(): SinkInfo;
}

/** What an operator sees of a session's connection. */
export interface SinkInfo {
  /** The client's IP address, when connected. */
  address?: string;
  /** tcp, websocket or bosh; "waiting" while a stream-managed session waits to be resumed. */
  transport: string;
}

/**
 * One bound resource (RFC 6120 §7): the per-resource state RFC 6121 needs for delivery
 * decisions. Only the session manager creates sessions.
 */
export class Session {
  /** RFC 6121 §4.7.2.3: priority of the last available presence; 0 until then. */
  priority = 0;
  /** Sent initial presence and has not gone unavailable since (RFC 6121 §4.2). */
  available = false;
  /** The last available presence broadcast by this resource, with the server-stamped from. */
  presence?: Element;
  /** Asked for the roster, so it gets roster pushes (RFC 6121 §2.1.6: "interested resource"). */
  interested = false;
  /** Asked for the block list, so it gets block/unblock pushes (XEP-0191 §3.3). */
  blocklistInterested = false;
  /** XEP-0280 carbons enabled. */
  carbons = false;
  /** RFC 6121 §4.6: entities this resource sent directed available presence to (full JID strings). */
  readonly directedPresence = new Set<string>();
  readonly bare: string;
  readonly full: string;
  readonly startedAt = Date.now();
  ended = false;
  /** Set when the session ends because it moved to another node (XEP-0198 resumption there): no unavailable presence. */
  movedTo?: string;

  /** When the resource was bound. */
  readonly since = new Date();

  /**
   * `afterEnd` takes what is sent to the session once it has ended (a delivery that was under way
   * when it ended): RFC 6121's handling of a resource that is gone, so that nothing accepted is lost.
   */
  constructor(readonly jid: JID, readonly sink: StanzaSink, private readonly afterEnd?: (session: Session, element: Element) => void) {
    this.bare = jid.bareString();
    this.full = jid.toString();
  }

  get id(): string {
    return this.sink.id;
  }

  /** Waiting to be resumed (see StanzaSink.waiting). */
  get waiting(): boolean {
    return this.sink.waiting === true;
  }

  send(element: Element): void {
    if (this.ended) return this.afterEnd?.(this, element);
    if (held) held.push([this, element]);
    else this.sink.send(element);
  }
}

/** Deliveries made while a hold is on, in order; undefined when none is. */
let held: [Session, Element][] | undefined;

/**
 * Holds every delivery to a session until release(): the cluster hands a chunk of routed stanzas
 * to the clients' sockets in one go, right before acknowledging them to their senders, and drops
 * them instead when the process was frozen past the link timeout meanwhile (the senders have
 * re-routed them by then).
 */
export const deliveryHold = {
  hold(): void {
    held ??= [];
  },
  /** Forgets what was held; returns how many deliveries that was. */
  drop(): number {
    const count = held?.length ?? 0;
    held = undefined;
    return count;
  },
  /**
   * Sends what was held and returns, for the streams that could not
   * yet hand all of it to the kernel (slow readers), promises that resolve when they have.
   */
  release(): Promise<void>[] {
    const deliveries = held ?? [];
    held = undefined;
    const sinks = new Set<StanzaSink>();
    for (const [session, element] of deliveries) {
      // One broken stream must not keep the others' stanzas (its transport closes it by itself).
      try {
        // Ended while held (its connection closed meanwhile): it goes where a gone resource's would.
        if (session.ended) {
          session.send(element);
          continue;
        }
        session.sink.send(element);
        sinks.add(session.sink);
      } catch {
        continue;
      }
    }
    const unwritten: Promise<void>[] = [];
    for (const sink of sinks) {
      sink.flush?.();
      const written = sink.whenWritten?.();
      if (written) unwritten.push(written);
    }
    return unwritten;
  },
};
