import { randomBytes } from 'node:crypto';
import { Element } from 'ltx';
import { StreamError } from '../errors';
import type { Logger } from '../log';
import type { Session, StanzaSink } from '../sm/session';
import type { SessionManager } from '../sm/session-manager';
import { NS } from '../xml/ns';

/** Unacknowledged stanzas that make the server ask for an acknowledgement at once [16]. */
const REQUEST_AFTER = 16;
/** Otherwise it asks this long after the last stanza sent [2 s]. */
const REQUEST_IDLE_MS = 2000;

/** XEP-0198 counts messages, presences and IQs, nothing else. */
export function isStanza(element: Element): boolean {
  return element.name === 'message' || element.name === 'presence' || element.name === 'iq';
}

/** What a client stream offers the session bound on it. */
export interface StreamOutput {
  send(element: Element): void;
  flush?(): void;
  whenWritten?(): Promise<void> | undefined;
  /** Ends the stream (with a stream error), and the session with it. */
  close(error?: StreamError): void;
  /** Ends the stream quietly, leaving the session to another stream that resumed it. */
  release(): void;
}

/** XEP-0198 state of one session: its unacknowledged stanzas and both counters. */
export interface ManagedState {
  readonly id: string;
  /** Resumption allowed for this long after the connection drops (seconds); 0 when the client did not ask. */
  readonly max: number;
  /** Stanzas the client sent and the server handled since <enable/> (the server's 'h'). */
  handled: number;
  /** Sent stanzas not yet acknowledged, oldest first; `acked` is how many before them were. */
  readonly unacked: Element[];
  acked: number;
  /** An <r/> went out and no <a/> has answered it. */
  requested: boolean;
  /** While hibernated: when the session ends unless resumed. */
  timer?: NodeJS.Timeout;
}

/**
 * The sink of a client session: it outlives the stream it was bound on, because a stream-managed
 * session (XEP-0198) can hibernate when its connection drops and move to the stream that resumes it.
 * With stream management on, every stanza sent is kept until the client acknowledges it.
 */
export class ClientSink implements StanzaSink {
  sm?: ManagedState;
  /** Called when a hibernating session's queue passes the limit. */
  overflow?: () => void;
  private ackScheduled = false;
  private idleTimer?: NodeJS.Timeout;

  constructor(readonly id: string, private output: StreamOutput | undefined, private readonly maxUnacked: number) {}

  get attached(): boolean {
    return this.output !== undefined;
  }

  send(element: Element): void {
    const sm = this.sm;
    if (sm && isStanza(element)) {
      sm.unacked.push(element);
      if (sm.unacked.length > this.maxUnacked) {
        // The client does not acknowledge (or stays away): the session ends, and what it holds
        // is handled as undelivered (it is queued, so nothing is lost).
        if (this.output) this.output.close(new StreamError('policy-violation', `more than ${this.maxUnacked} stanzas unacknowledged`));
        else this.overflow?.();
        return;
      }
      this.requestAck();
    }
    this.output?.send(element);
  }

  flush(): void {
    this.output?.flush?.();
  }

  whenWritten(): Promise<void> | undefined {
    return this.output?.whenWritten?.();
  }

  close(error?: StreamError): void {
    this.output?.close(error);
  }

  /** The stream is gone (hibernating) or another one took over. */
  detach(): StreamOutput | undefined {
    const output = this.output;
    this.output = undefined;
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    return output;
  }

  attach(output: StreamOutput): void {
    this.output = output;
  }

  /**
   * The client has handled `h` of our stanzas (counted modulo 2^32): they leave the queue.
   * False when it claims more than were sent (XEP-0198 §4 handled-count-too-high).
   */
  acknowledge(h: number): boolean {
    const sm = this.sm;
    if (!sm) return true;
    sm.requested = false;
    const count = (h - sm.acked) >>> 0;
    if (count > sm.unacked.length) return false;
    sm.unacked.splice(0, count);
    sm.acked = h >>> 0;
    return true;
  }

  /** Everything sent since `h`, to send again on a resumed stream. */
  unackedSince(h: number): Element[] | undefined {
    return this.acknowledge(h) ? [...(this.sm?.unacked ?? [])] : undefined;
  }

  /**
   * Asks the client what it has handled (<r/>), sparingly: acknowledgements only trim the queue
   * (a resumption says exactly what arrived), and every <r/> costs the client a write. One goes
   * out when REQUEST_AFTER stanzas are unacknowledged, or REQUEST_IDLE_MS after the last one,
   * never while another is unanswered.
   */
  private requestAck(): void {
    const sm = this.sm!;
    if (sm.requested || !this.output) return;
    if (sm.unacked.length >= REQUEST_AFTER) {
      if (this.ackScheduled) return;
      this.ackScheduled = true;
      setImmediate(() => {
        this.ackScheduled = false;
        this.sendRequest();
      });
      return;
    }
    if (this.idleTimer) this.idleTimer.refresh();
    else this.idleTimer = setTimeout(() => this.sendRequest(), REQUEST_IDLE_MS).unref();
  }

  private sendRequest(): void {
    const sm = this.sm;
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (!sm || !this.output || sm.requested || sm.unacked.length === 0) return;
    sm.requested = true;
    this.output.send(new Element('r', { xmlns: NS.SM }));
  }
}

/** Why a resumption failed (XEP-0198 §5: <failed/> with a stanza error condition). */
export type ResumeFailure = 'item-not-found' | 'unexpected-request';

/**
 * This node's stream-managed sessions: ids, hibernation after a dropped connection (the session
 * stays bound and keeps collecting stanzas for `max` seconds), resumption by a new stream of the
 * same user, and, when a session ends without being resumed, its unacknowledged stanzas handed
 * back for delivery as RFC 6121 says for a resource that is gone (other resources, offline storage).
 */
export class StreamManagementRegistry {
  private readonly byId = new Map<string, { session: Session; sink: ClientSink }>();
  readonly counters = { enabled: 0, hibernated: 0, resumed: 0, failedResumptions: 0, expired: 0, requeued: 0 };

  constructor(
    private readonly sessions: SessionManager,
    private readonly opts: { resumptionTimeout: number; logger: Logger; undelivered: (stanza: Element, session: Session) => void },
  ) {
    sessions.onEnd((session) => this.ended(session));
  }

  /** Sessions waiting for their client to resume. */
  get hibernating(): number {
    let n = 0;
    for (const { sink } of this.byId.values()) if (!sink.attached) n++;
    return n;
  }

  /** XEP-0198 §3: turns stream management on for a bound session; returns the <enabled/> answer. */
  enable(session: Session, sink: ClientSink, resume: boolean, requestedMax: number | undefined): Element {
    const max = resume ? Math.max(1, Math.min(requestedMax && requestedMax > 0 ? requestedMax : Infinity, this.opts.resumptionTimeout)) : 0;
    const id = randomBytes(15).toString('base64url');
    sink.sm = { id, max, handled: 0, unacked: [], acked: 0, requested: false };
    this.counters.enabled++;
    const enabled = new Element('enabled', { xmlns: NS.SM });
    if (resume) {
      this.byId.set(id, { session, sink });
      enabled.attrs.id = id;
      enabled.attrs.resume = 'true';
      enabled.attrs.max = String(Math.floor(max));
    }
    return enabled;
  }

  /**
   * The connection dropped: a resumable session hibernates (still bound, still available, its
   * stanzas queued) until `max` runs out. False when it is not resumable and must end now.
   */
  hibernate(session: Session): boolean {
    const sink = session.sink instanceof ClientSink ? session.sink : undefined;
    const sm = sink?.sm;
    if (!sink || !sm || sm.max === 0 || !this.byId.has(sm.id) || session.ended) return false;
    sink.detach();
    sm.requested = false;
    this.counters.hibernated++;
    sink.overflow = () => this.sessions.end(session);
    sm.timer = setTimeout(() => {
      this.counters.expired++;
      this.opts.logger.info('stream management session expired', { conn: session.id, jid: session.full, unacked: sm.unacked.length });
      this.sessions.end(session);
    }, sm.max * 1000);
    sm.timer.unref();
    this.opts.logger.info('session hibernating', { conn: session.id, jid: session.full, seconds: sm.max, unacked: sm.unacked.length });
    return true;
  }

  /**
   * XEP-0198 §5: `user` (bare JID) resumes session `id` on a new stream, having handled `h` of
   * our stanzas. Returns the session and what to send again, or why not. A session still attached
   * to an old stream (its death not noticed yet) leaves that stream.
   */
  resume(id: string, user: string, h: number, output: StreamOutput): { session: Session; sink: ClientSink; resend: Element[] } | ResumeFailure {
    const entry = this.byId.get(id);
    if (!entry || entry.session.ended || entry.session.bare !== user) {
      this.counters.failedResumptions++;
      return 'item-not-found';
    }
    const { session, sink } = entry;
    const resend = sink.unackedSince(h);
    if (!resend) {
      this.counters.failedResumptions++;
      return 'unexpected-request';
    }
    clearTimeout(sink.sm!.timer);
    sink.sm!.timer = undefined;
    sink.overflow = undefined;
    sink.detach()?.release();
    sink.attach(output);
    this.counters.resumed++;
    return { session, sink, resend };
  }

  /** Ends every session that waits to be resumed (the node is stopping). */
  endHibernating(): void {
    for (const { session, sink } of [...this.byId.values()]) if (!sink.attached) this.sessions.end(session);
  }

  private ended(session: Session): void {
    const sink = session.sink instanceof ClientSink ? session.sink : undefined;
    const sm = sink?.sm;
    if (!sink || !sm) return;
    clearTimeout(sm.timer);
    this.byId.delete(sm.id);
    const unacked = sm.unacked.splice(0);
    if (unacked.length === 0) return;
    this.counters.requeued += unacked.length;
    this.opts.logger.info('unacknowledged stanzas handled as undelivered', { conn: session.id, jid: session.full, count: unacked.length });
    // After the session is gone from the session manager, so that nothing goes back to it.
    setImmediate(() => {
      for (const stanza of unacked) {
        try {
          this.opts.undelivered(stanza, session);
        } catch (err) {
          this.opts.logger.warn('an unacknowledged stanza could not be handled', { jid: session.full, err: String(err) });
        }
      }
    });
  }
}
