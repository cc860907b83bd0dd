import { randomBytes } from 'node:crypto';
import { Element, parse as parseXml } from 'ltx';
import { StreamError } from '../errors';
import type { Logger } from '../log';
import type { Session, SinkInfo, StanzaSink } from '../sm/session';
import type { SessionManager } from '../sm/session-manager';
import { NS } from '../xml/ns';
import { nodeOfId, nodeTaggedId } from '../node-id';

/** Unacknowledged stanzas that make the server ask for an acknowledgement at once [16]. */
const REQUEST_AFTER = 16;
/** Otherwise it asks this long after the last stanza sent [2 s]. */
const REQUEST_IDLE_MS = 2000;

/** Stanzas held for an inactive client (XEP-0352) before they are all sent anyway [100]. */
const CSI_MAX_HELD = 100;

/**
 * XEP-0352: what can wait while the client is inactive: presence (only the latest from each
 * sender is kept), chat states and PEP notifications without a body. Everything else (IQs,
 * messages a person reads, errors) is urgent and goes at once, after what was held.
 */
function canWait(element: Element): boolean {
  if (element.name === 'presence') return element.attrs.type === undefined || element.attrs.type === 'unavailable';
  if (element.name !== 'message' || element.attrs.type === 'error') return false;
  if (element.getChild('body') || element.getChild('subject')) return false;
  const children = element.getChildElements();
  return children.length > 0 && children.every((child) => child.attrs.xmlns === NS.CHATSTATES || child.attrs.xmlns === NS.PUBSUB_EVENT || child.name === 'delay');
}

/** A chat or normal message with a body: what a push notification is for. */
export function isPersonal(element: Element): boolean {
  const type = element.attrs.type ?? 'normal';
  return element.name === 'message' && (type === 'chat' || type === 'normal') && Boolean(element.getChild('body'));
}

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
  /** The client's address and transport, for operators. */
  readonly info?: SinkInfo;
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
  /** XEP-0352: the client said it is inactive; `held` is what waits for it to be active again. */
  inactive = false;
  readonly held: Element[] = [];
  /** Called when a hibernating session's queue passes the limit. */
  overflow?: () => void;
  private ackScheduled = false;
  private idleTimer?: NodeJS.Timeout;

  constructor(readonly id: string, private output: StreamOutput | undefined, private readonly maxUnacked: number) {}

  get attached(): boolean {
    return this.output !== undefined;
  }

  get waiting(): boolean {
    return this.sm !== undefined && this.output === undefined;
  }

  send(element: Element): void {
    if (this.inactive && this.output) {
      if (canWait(element) && this.hold(element)) return;
      this.release();
    }
    this.deliver(element);
  }

  /** XEP-0352 <inactive/> and <active/>: becoming active sends what was held. */
  setActive(active: boolean): void {
    this.inactive = !active;
    if (active) this.release();
  }

  /** Keeps a stanza that can wait; false when the buffer is full (then everything goes). */
  private hold(element: Element): boolean {
    if (element.name === 'presence') {
      const older = this.held.findIndex((held) => held.name === 'presence' && held.attrs.from === element.attrs.from);
      if (older >= 0) this.held.splice(older, 1);
    }
    if (this.held.length >= CSI_MAX_HELD) return false;
    this.held.push(element);
    return true;
  }

  private release(): void {
    for (const element of this.held.splice(0)) this.deliver(element);
  }

  private deliver(element: Element): void {
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

  describe(): SinkInfo {
    if (!this.output) return { transport: 'waiting' };
    return this.output.info ?? { transport: 'unknown' };
  }

  /** The stream is gone (hibernating) or another one took over. */
  detach(): StreamOutput | undefined {
    // What was held for an inactive client joins the queue a resumed stream will get.
    this.release();
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

export interface Resumed {
  session: Session;
  sink: ClientSink;
  resend: Element[];
}

/** How this node asks the node holding a session to hand it over (the cluster link). */
export type HandOverRequest = (node: string, id: string, user: string, h: number) => Promise<Element>;

/**
 * This node's stream-managed sessions: ids, hibernation after a dropped connection (the session
 * stays bound and keeps collecting stanzas for `max` seconds), resumption by a new stream of the
 * same user, and, when a session ends without being resumed, its unacknowledged stanzas handed
 * back for delivery as RFC 6121 says for a resource that is gone (other resources, offline storage).
 */
export class StreamManagementRegistry {
  private readonly byId = new Map<string, { session: Session; sink: ClientSink }>();
  /** Sessions that moved to another node, by id: a later resumption elsewhere is sent there [for max seconds]. */
  private readonly moved = new Map<string, { node: string; timer: NodeJS.Timeout }>();
  private handOverRequest?: HandOverRequest;
  /** The other nodes that can be asked for a session (connected peers). */
  private peers: () => string[] = () => [];
  readonly counters = { enabled: 0, hibernated: 0, resumed: 0, failedResumptions: 0, expired: 0, requeued: 0, movedHere: 0, movedAway: 0 };
  /** Set by endHibernating: the node is stopping and no session waits any more. */
  private closing = false;

  constructor(
    private readonly sessions: SessionManager,
    private readonly opts: {
      resumptionTimeout: number;
      logger: Logger;
      undelivered: (stanza: Element, session: Session) => void;
      /** In a cluster: this node's name, carried in every id so that any node can find the session. */
      localNode?: string;
      /** A session was resumed here: what was stored for its user meanwhile goes to it now. */
      resumed?: (session: Session) => void;
      maxUnacked: number;
    },
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
    const id = this.opts.localNode ? nodeTaggedId(15, this.opts.localNode) : randomBytes(15).toString('base64url');
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
    if (this.closing || !sink || !sm || sm.max === 0 || !this.byId.has(sm.id) || session.ended) return false;
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
  /**
   * Lets a resumption of another node's session ask that node (set by the cluster), and, when that
   * node does not know the session, the other `peers`.
   */
  setHandOver(request: HandOverRequest, peers: () => string[] = () => []): void {
    this.handOverRequest = request;
    this.peers = peers;
  }

  /**
   * XEP-0198 §5 anywhere in the cluster: the session is here, or on the node its id names (or
   * where that node says it moved), which hands it over: it leaves there without any presence
   * change and is bound here with its state, its counters and its unacknowledged stanzas.
   */
  async resumeAnywhere(id: string, user: string, h: number, output: StreamOutput, domain: string): Promise<Resumed | ResumeFailure> {
    if (this.byId.has(id) || !this.handOverRequest) return this.resume(id, user, h, output);
    const asked = new Set<string>([this.opts.localNode ?? '']);
    const ask = async (node: string): Promise<Resumed | ResumeFailure | { moved: string } | undefined> => {
      asked.add(node);
      let answer: Element;
      try {
        answer = await this.handOverRequest!(node, id, user, h);
      } catch (err) {
        this.opts.logger.info('session could not be fetched from its node', { peer: node, err: String(err) });
        return undefined;
      }
      const session = answer.getChild('session');
      if (session) return this.adopt(session, id, output, domain, node);
      if (answer.attrs.moved) return { moved: String(answer.attrs.moved) };
      if (answer.attrs.failed === 'unexpected-request') return 'unexpected-request';
      return undefined;
    };
    // The node the id names, or where it says the session went.
    let owner = this.moved.get(id)?.node ?? nodeOfId(id);
    for (let hop = 0; hop < 2 && owner && !asked.has(owner); hop++) {
      const outcome = await ask(owner);
      if (outcome && typeof outcome === 'object' && 'moved' in outcome) {
        owner = outcome.moved;
        continue;
      }
      if (outcome === 'unexpected-request') this.counters.failedResumptions++;
      if (outcome) return outcome;
      break;
    }
    // That node no longer knows (it restarted since it handed the session over): any other may hold it.
    for (const peer of this.peers()) {
      if (asked.has(peer)) continue;
      const outcome = await ask(peer);
      if (outcome === 'unexpected-request') this.counters.failedResumptions++;
      if (outcome && !(typeof outcome === 'object' && 'moved' in outcome)) return outcome;
    }
    this.counters.failedResumptions++;
    return 'item-not-found';
  }

  /**
   * The owner's side of a resumption on `to`: the session leaves this node (no presence change:
   * it lives on there) and its state is the answer. Null payload attributes say why not.
   */
  handOver(id: string, user: string, h: number, to: string): Element {
    const answer = new Element('handover');
    const entry = this.byId.get(id);
    if (!entry || entry.session.ended || entry.session.bare !== user) {
      const moved = this.moved.get(id);
      if (moved && moved.node !== to) answer.attrs.moved = moved.node;
      else answer.attrs.failed = 'item-not-found';
      return answer;
    }
    const { session, sink } = entry;
    const sm = sink.sm!;
    if (!sink.unackedSince(h)) {
      answer.attrs.failed = 'unexpected-request';
      return answer;
    }
    clearTimeout(sm.timer);
    sink.detach()?.release();
    const state = new Element('session', {
      jid: session.full, available: session.available ? '1' : '0', priority: String(session.priority),
      interested: session.interested ? '1' : '0', blocklist: session.blocklistInterested ? '1' : '0', carbons: session.carbons ? '1' : '0',
      handled: String(sm.handled), acked: String(sm.acked), max: String(sm.max),
    });
    if (session.presence) state.c('presence-state').cnode(session.presence);
    for (const jid of session.directedPresence) state.c('directed', { jid });
    const queue = state.c('unacked');
    for (const stanza of sm.unacked.splice(0)) queue.cnode(stanza);
    this.byId.delete(id);
    const timer = setTimeout(() => this.moved.delete(id), Math.max(1, sm.max) * 1000).unref();
    this.moved.set(id, { node: to, timer });
    session.movedTo = to;
    this.sessions.end(session);
    this.counters.movedAway++;
    this.opts.logger.info('session handed over to another node', { conn: session.id, jid: session.full, peer: to });
    answer.cnode(state);
    return answer;
  }

  /** Binds a session handed over by `from` on this node, on the resuming stream. */
  private adopt(state: Element, id: string, output: StreamOutput, domain: string, from: string): Resumed | ResumeFailure {
    const full = String(state.attrs.jid);
    const slash = full.indexOf('/');
    const at = full.indexOf('@');
    if (slash < 0 || at < 0) return 'item-not-found';
    const sink = new ClientSink(`resumed-${randomBytes(4).toString('hex')}`, output, this.opts.maxUnacked);
    const unacked = state.getChild('unacked')?.getChildElements().map((el) => parseXml(el.toString())) ?? [];
    sink.sm = {
      id, max: Number(state.attrs.max) || this.opts.resumptionTimeout, handled: Number(state.attrs.handled) >>> 0,
      unacked, acked: Number(state.attrs.acked) >>> 0, requested: false,
    };
    const session = this.sessions.bind(sink, full.slice(0, at), domain, full.slice(slash + 1));
    session.interested = state.attrs.interested === '1';
    session.blocklistInterested = state.attrs.blocklist === '1';
    for (const directed of state.getChildren('directed')) session.directedPresence.add(String(directed.attrs.jid));
    const presence = state.getChild('presence-state')?.getChildElements()[0];
    if (state.attrs.available === '1' && presence) {
      session.available = true;
      session.priority = Number(state.attrs.priority) || 0;
      session.presence = parseXml(presence.toString());
    }
    this.sessions.setCarbons(session, state.attrs.carbons === '1');
    this.sessions.presenceChanged(session);
    this.byId.set(id, { session, sink });
    this.counters.resumed++;
    this.counters.movedHere++;
    this.opts.logger.info('session resumed from another node', { jid: session.full, peer: from, unacked: unacked.length });
    return { session, sink, resend: [...unacked] };
  }

  resume(id: string, user: string, h: number, output: StreamOutput): Resumed | ResumeFailure {
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
    // A client state (XEP-0352) belongs to the connection that said it: the new one starts active.
    sink.setActive(true);
    this.counters.resumed++;
    return { session, sink, resend };
  }

  /** After <resumed/> and the stanzas sent again: messages stored while the session waited follow. */
  afterResume(session: Session): void {
    this.opts.resumed?.(session);
  }

  /** Sessions waiting to be resumed on this node now. */
  get waiting(): number {
    let n = 0;
    for (const { sink } of this.byId.values()) if (!sink.attached) n++;
    return n;
  }

  /**
   * Ends every session that waits to be resumed, and from now on none waits: a session whose
   * connection drops ends at once (the node is about to close its links and exit).
   */
  endHibernating(): void {
    this.closing = true;
    for (const { session, sink } of [...this.byId.values()]) if (!sink.attached) this.sessions.end(session);
  }

  private ended(session: Session): void {
    const sink = session.sink instanceof ClientSink ? session.sink : undefined;
    const sm = sink?.sm;
    if (!sink || !sm) return;
    clearTimeout(sm.timer);
    if (this.byId.get(sm.id)?.session === session) this.byId.delete(sm.id);
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
