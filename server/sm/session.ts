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
    if (!this.ended) this.sink.send(element);
  }
}
