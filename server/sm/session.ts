import type { Element } from 'ltx';
import type { JID } from '../jid';
import type { StreamError } from '../errors';

/** Where a session's stanzas go: the client stream it belongs to. */
export interface StanzaSink {
  readonly id: string;
  send(element: Element): void;
  close(error?: StreamError): void;
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

  constructor(readonly jid: JID, readonly sink: StanzaSink) {
    this.bare = jid.bareString();
    this.full = jid.toString();
  }

  get id(): string {
    return this.sink.id;
  }

  send(element: Element): void {
    if (this.ended) return;
    if (held) held.push([this, element]);
    else this.sink.send(element);
  }
}

/** Deliveries made while a hold is on, in order; undefined when none is. */
let held: [Session, Element][] | undefined;

/**
 * Holds every delivery to a session until release(): the cluster acknowledges a chunk of routed
 * stanzas to their senders before the stanzas leave, and drops them instead when the process was
 * frozen past the link timeout in between (the senders have re-routed them by then).
 */
export const deliveryHold = {
  hold(): void {
    held ??= [];
  },
  /** Sends what was held (or forgets it, when `drop`); returns how many deliveries there were. */
  release(drop = false): number {
    const deliveries = held ?? [];
    held = undefined;
    if (!drop) for (const [session, element] of deliveries) if (!session.ended) session.sink.send(element);
    return deliveries.length;
  },
};
