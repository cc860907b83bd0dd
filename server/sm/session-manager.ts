import { randomBytes } from 'node:crypto';
import type { Element } from 'ltx';
import { StreamError } from '../errors';
import { makeJID, type JID } from '../jid';
import { Session, type StanzaSink } from './session';

export type SessionListener = (session: Session) => void | Promise<void>;

/**
 * The sessions bound on this node, by bare JID then resource. Lookups are in memory: delivery to
 * an online user never touches the database (DESIGN: no per-stanza query on the hot path).
 */
export class SessionManager {
  private readonly byBare = new Map<string, Map<string, Session>>();
  private readonly endListeners: SessionListener[] = [];
  private readonly bindListeners: SessionListener[] = [];
  private readonly presenceListeners: SessionListener[] = [];
  private total = 0;
  private afterEnd?: (session: Session, element: Element) => void;

  /** Called after a session is bound. */
  onBind(listener: SessionListener): void {
    this.bindListeners.push(listener);
  }

  /** Called when what the cluster knows of a session changes: availability, priority (RFC 6121 §4) or carbons (XEP-0280). */
  onPresenceChange(listener: SessionListener): void {
    this.presenceListeners.push(listener);
  }

  /** The presence service reports availability and priority changes here. */
  presenceChanged(session: Session): void {
    if (session.ended) return;
    for (const listener of this.presenceListeners) void listener(session);
  }

  /** XEP-0280: the session enabled or disabled carbons. */
  setCarbons(session: Session, enabled: boolean): void {
    if (session.carbons === enabled) return;
    session.carbons = enabled;
    this.presenceChanged(session);
  }

  /** Called once when a session ends, however it ends (before it is forgotten). */
  onEnd(listener: SessionListener): void {
    this.endListeners.push(listener);
  }

  /**
   * Binds a resource (RFC 6120 §7.6). A requested resource that is already bound takes over:
   * the older session gets a <conflict/> stream error (RFC 6120 §7.7.2.2, "override the existing
   * session"). Without a request the server picks a random resource.
   */
  bind(sink: StanzaSink, local: string, domain: string, requested?: string): Session {
    const jid = makeJID(local, domain, requested || randomResource());
    const resources = this.byBare.get(jid.bareString()) ?? new Map<string, Session>();
    const old = resources.get(jid.resource);
    if (old) {
      this.end(old);
      old.sink.close(new StreamError('conflict', 'Replaced by a new connection with the same resource'));
    }
    const session = new Session(jid, sink, (ended, element) => this.afterEnd?.(ended, element));
    resources.set(jid.resource, session);
    this.byBare.set(session.bare, resources);
    this.total++;
    for (const listener of this.bindListeners) void listener(session);
    return session;
  }

  /** Where stanzas sent to a session after it ended go (set by the node; see Session). */
  setAfterEnd(handler: (session: Session, element: Element) => void): void {
    this.afterEnd = handler;
  }

  /** Ends a session: listeners run (e.g. unavailable presence), then it is forgotten. Idempotent. */
  end(session: Session): void {
    if (session.ended) return;
    for (const listener of this.endListeners) void listener(session);
    session.ended = true;
    const resources = this.byBare.get(session.bare);
    if (resources?.get(session.jid.resource) === session) {
      resources.delete(session.jid.resource);
      this.total--;
      if (resources.size === 0) this.byBare.delete(session.bare);
    }
  }

  get(jid: JID): Session | undefined {
    return this.byBare.get(jid.bareString())?.get(jid.resource);
  }

  /** Every bound resource of a bare JID on this node. */
  resources(bare: string): Session[] {
    const resources = this.byBare.get(bare);
    return resources ? [...resources.values()] : [];
  }

  hasSessions(bare: string): boolean {
    return this.byBare.has(bare);
  }

  get count(): number {
    return this.total;
  }

  all(): IterableIterator<Session> {
    return (function* (byBare) {
      for (const resources of byBare.values()) yield* resources.values();
    })(this.byBare);
  }
}

function randomResource(): string {
  return randomBytes(6).toString('hex');
}
