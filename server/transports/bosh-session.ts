import { escapeXML, type Element } from 'ltx';
import type { Transport, TransportListener } from '../c2s/transport';
import type { StreamError } from '../errors';
import type { RequestInfo } from '../http/request-info';
import type { Logger } from '../log';
import { NS } from '../xml/ns';
import { standaloneXml } from '../xml/standalone';
import { SendLimit } from './send-limit';

/** The XEP-0124 version implemented; a client asking for less gets its own. */
const BOSH_VERSION = { major: 1, minor: 11 };
/** Longest time a request is held, in seconds [60]; a client asking for more gets this. */
export const MAX_WAIT_SECONDS = 60;
/** Requests held at once [1]: XEP-0124 §11 recommends 1 when the client cannot pipeline. */
const MAX_HOLD = 1;
/** Simultaneous requests a client may make [2]: hold + 1, so it can always send while one is held. */
export const REQUESTS = 2;
/** Shortest polling interval, in seconds [2] (XEP-0124 §12). */
export const POLLING_SECONDS = 2;
/** Longest pause a client may ask for, in seconds [120] (XEP-0124 §10). */
export const MAX_PAUSE_SECONDS = 120;
/** Highest rid a client may use: 2^53 - 1 (XEP-0124 §14.1). */
const MAX_RID = Number.MAX_SAFE_INTEGER;

/** What the HTTP layer writes back for one BOSH request. */
export interface BoshResponse {
  status: number;
  contentType: string;
  body: string;
}

/** XEP-0124 §17.2 terminal binding conditions this server sends. */
export type BindingCondition =
  | 'bad-request' | 'host-unknown' | 'item-not-found' | 'policy-violation'
  | 'remote-stream-error' | 'system-shutdown' | 'internal-server-error';

export const DEFAULT_CONTENT_TYPE = 'text/xml; charset=utf-8';

/** XEP-0124 §17.1: HTTP codes for clients that did not send 'ver' (legacy clients). */
const LEGACY_STATUS: Partial<Record<BindingCondition, number>> = { 'bad-request': 400, 'policy-violation': 403, 'item-not-found': 404 };

/** A terminal binding error outside any session (unknown sid, unreadable body). */
export function bindingError(condition: BindingCondition, status = 200): BoshResponse {
  return { status, contentType: DEFAULT_CONTENT_TYPE, body: `<body type='terminate' condition='${condition}' xmlns='${NS.HTTPBIND}'/>` };
}

/** A rid: a positive integer below 2^53 written in decimal, else undefined. */
export function parseRid(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,16}$/.test(value)) return undefined;
  const rid = Number(value);
  return rid > 0 && rid <= MAX_RID ? rid : undefined;
}

/** The value of an attribute in the XEP-0206 namespace (urn:xmpp:xbosh), whatever its prefix. */
export function xboshAttribute(body: Element, name: string): string | undefined {
  let prefix = 'xmpp';
  for (const [key, value] of Object.entries(body.attrs)) {
    if (key.startsWith('xmlns:') && value === NS.XBOSH) prefix = key.slice(6);
  }
  return body.attrs[`${prefix}:${name}`] as string | undefined;
}

interface Waiting {
  rid: number;
  body: Element;
  resolvers: ((response: BoshResponse) => void)[];
}

interface Held {
  rid: number;
  resolvers: ((response: BoshResponse) => void)[];
  timer?: NodeJS.Timeout;
}

export interface BoshSessionOptions {
  id: string;
  sid: string;
  /** The session creation request. */
  creation: Element;
  creationRid: number;
  info: RequestInfo;
  /** Seconds without a held request after which the session ends (--bosh-inactivity). */
  inactivity: number;
  /** Bytes that may wait for the client to fetch them before the stream is closed (--client-send-queue), read at each check. */
  sendQueueBytes?: () => number;
  logger: Logger;
  /** The session is over; `tombstone` when a final response is still waiting to be fetched. */
  onEnd(tombstone: boolean): void;
}

/**
 * One BOSH session (XEP-0124, XEP-0206): a Transport for the one stream state machine whose
 * "connection" is a sequence of HTTP requests. It orders requests by rid, holds up to `hold`
 * of them until there is something to send or `wait` runs out, keeps the last responses for a
 * client that resends a rid, and ends the session on `terminate`, inactivity or a binding error.
 */
export class BoshSession implements Transport {
  /** Set by the listener: the per-address limits stop counting this client as waiting to log in. */
  authenticated?: () => void;
  readonly kind = 'bosh' as const;
  readonly canStartTls = false;
  readonly id: string;
  readonly sid: string;
  readonly secure: boolean;
  readonly remoteAddress: string;
  readonly wait: number;
  readonly hold: number;
  private readonly legacy: boolean;
  private readonly ver: string;
  private readonly contentType: string;
  private readonly acks: boolean;
  private readonly creationRid: number;
  private readonly normalInactivity: number;
  private inactivity: number;
  private listener?: TransportListener;
  /** Highest rid processed; every lower rid has been processed too. */
  private lastRid: number;
  /** Requests that arrived ahead of a missing rid (XEP-0124 §14.2). */
  private readonly waiting = new Map<number, Waiting>();
  /** Processed requests not yet answered, oldest first. */
  private held: Held[] = [];
  /** Serialised elements waiting for a request to carry them. */
  private queue: string[] = [];
  /** The length of what `queue` holds. */
  private queued = 0;
  /** Closes the stream when more than --client-send-queue waits for the client to fetch it. */
  private readonly sendLimit?: SendLimit;
  /** The last responses by rid, for a client that lost one (XEP-0124 §14.3). */
  private readonly cache = new Map<number, string>();
  private header?: Record<string, string>;
  private previous?: { rid: number; empty: boolean; at: number; answeredEmpty: boolean };
  private inactivityTimer?: NodeJS.Timeout;
  private flushScheduled = false;
  private open = true;
  /** The terminate response nobody has fetched yet. */
  private finalBody?: string;
  private readonly log: Logger;

  constructor(private readonly opts: BoshSessionOptions) {
    const body = opts.creation;
    this.id = opts.id;
    this.sid = opts.sid;
    this.secure = opts.info.secure;
    this.remoteAddress = opts.info.remoteAddress;
    this.log = opts.logger;
    this.creationRid = opts.creationRid;
    this.lastRid = opts.creationRid;
    this.normalInactivity = this.inactivity = opts.inactivity;
    // XEP-0124 §7.2: wait and hold no greater than the client asked for.
    this.wait = clamp(body.attrs.wait, MAX_WAIT_SECONDS, 0, MAX_WAIT_SECONDS);
    this.hold = clamp(body.attrs.hold, MAX_HOLD, 0, MAX_HOLD);
    if (opts.sendQueueBytes) {
      this.sendLimit = new SendLimit(() => this.queued, opts.sendQueueBytes, (error) => {
        if (this.open) this.listener?.streamError(error);
      });
    }
    this.legacy = body.attrs.ver === undefined;
    this.ver = negotiateVersion(body.attrs.ver);
    this.acks = body.attrs.ack === '1';
    const content = body.attrs.content as string | undefined;
    // XEP-0124 §7.1: 'content' names the Content-Type of every response; only a plain media type is taken.
    this.contentType = content && /^[\w.+-]+\/[\w.+-]+(\s*;\s*[\w-]+=[\w.-]+)*$/.test(content) ? content : DEFAULT_CONTENT_TYPE;
  }

  /** A polling session (XEP-0124 §12): every request is answered at once. */
  private get polling(): boolean {
    return this.hold === 0 || this.wait === 0;
  }

  // ---- the HTTP side ----

  /** Starts the stream with the creation request; resolves with the creation response. */
  start(listener: TransportListener): Promise<BoshResponse> {
    this.listener = listener;
    const body = this.opts.creation;
    const attrs: Record<string, string> = { version: xboshAttribute(body, 'version') ?? '1.0' };
    if (body.attrs.to) attrs.to = body.attrs.to;
    if (body.attrs.from) attrs.from = body.attrs.from;
    if (body.attrs['xml:lang']) attrs['xml:lang'] = body.attrs['xml:lang'];
    return new Promise((resolve) => {
      this.holdRequest({ rid: this.creationRid, resolvers: [resolve] });
      listener.streamStart(attrs);
    });
  }

  /** One later request of this session (its sid matched). */
  request(body: Element): Promise<BoshResponse> {
    if (!this.open) {
      const final = this.finalBody;
      this.finalBody = undefined;
      return Promise.resolve(final ? this.ok(final) : this.errorResponse('item-not-found'));
    }
    clearTimeout(this.inactivityTimer);
    const rid = parseRid(body.attrs.rid);
    if (rid === undefined) return Promise.resolve(this.fail('bad-request', 'missing or invalid rid'));
    return new Promise((resolve) => {
      if (rid <= this.lastRid) {
        this.resend(rid, resolve);
      } else if (rid > this.lastRid + REQUESTS) {
        // XEP-0124 §14.2: a rid beyond the window of 'requests' values ends the session.
        resolve(this.fail('item-not-found', `rid ${rid} outside the window`));
      } else {
        const duplicate = this.waiting.get(rid);
        if (duplicate) duplicate.resolvers.push(resolve);
        else this.waiting.set(rid, { rid, body, resolvers: [resolve] });
        this.drain();
      }
      this.updateInactivity();
    });
  }

  // ---- Transport ----

  sendHeader(attrs: Record<string, string>): void {
    // The first header goes into the session creation response (authid, from); restarts send features only.
    this.header ??= attrs;
  }

  send(element: Element): void {
    if (!this.open) return;
    const xml = standaloneXml(element);
    this.queue.push(xml);
    this.queued += xml.length;
    this.scheduleFlush();
    this.sendLimit?.wrote();
  }

  /**
   * The stream is over. XEP-0206 (remote-stream-error): a stream error travels as condition='remote-stream-error'
   * with the <stream:error/> inside; host-unknown and system-shutdown have binding conditions of their own.
   */
  close(error?: StreamError): void {
    if (!this.open) return;
    let condition: BindingCondition | undefined;
    if (error) {
      if (error.condition === 'host-unknown' || error.condition === 'system-shutdown') condition = error.condition;
      else {
        condition = 'remote-stream-error';
        this.queue.push(standaloneXml(error.toElement()));
      }
    }
    // XEP-0124 §13: a client's terminate is answered with an empty <body type='terminate'/>;
    // anything still queued was routed while the client was leaving (StanzaJS, for one, cannot
    // take payloads in that response). A stream error keeps what precedes it (XEP-0206).
    if (!error) this.takeQueue();
    this.terminate(condition, error ? `stream error ${error.condition}` : 'closed');
  }

  async startTls(): Promise<void> {
    throw new Error('no STARTTLS over BOSH');
  }

  restart(): void {
    // XEP-0206 (stream restart): the client asks for the restart with xmpp:restart='true'; see process().
  }

  channelBinding(): Buffer | undefined {
    return undefined; // each request may come on another TLS connection: nothing to bind to
  }

  channelBindingTypes(): string[] {
    return [];
  }

  // ---- request processing ----

  private resend(rid: number, resolve: (response: BoshResponse) => void): void {
    const held = this.held.find((h) => h.rid === rid);
    if (held) {
      // Still held: both copies get the same response when it goes.
      held.resolvers.push(resolve);
      return;
    }
    const cached = this.cache.get(rid);
    // XEP-0124 §14.3: the buffered copy, or item-not-found when it is gone.
    resolve(cached !== undefined ? this.ok(cached) : this.fail('item-not-found', `rid ${rid} is no longer buffered`));
  }

  /** Processes waiting requests in rid order. */
  private drain(): void {
    for (let next = this.waiting.get(this.lastRid + 1); next && this.open; next = this.waiting.get(this.lastRid + 1)) {
      this.waiting.delete(next.rid);
      this.lastRid = next.rid;
      this.process(next);
    }
  }

  private process(request: Waiting): void {
    const { body, rid } = request;
    const respondNow = (response: BoshResponse) => request.resolvers.forEach((r) => r(response));
    const ack = parseRid(body.attrs.ack);
    // XEP-0124 §9.2: the client has the responses up to 'ack'.
    if (ack !== undefined) for (const cached of this.cache.keys()) if (cached <= ack) this.cache.delete(cached);
    if (body.children.some((c) => typeof c === 'string' && c.trim() !== '')) {
      return respondNow(this.fail('bad-request', 'character data in <body/>'));
    }
    const payloads = body.getChildElements();
    const restart = xboshAttribute(body, 'restart') === 'true';
    const terminate = body.attrs.type === 'terminate';
    const pause = body.attrs.pause as string | undefined;
    const empty = payloads.length === 0 && !restart && !terminate && pause === undefined;
    const now = Date.now();
    const previous = this.previous;
    // XEP-0124 §12: two empty polls within 'polling' seconds, the first answered with nothing.
    if (empty && this.polling && previous?.empty && previous.answeredEmpty && now - previous.at < POLLING_SECONDS * 1000) {
      return respondNow(this.fail('policy-violation', 'polling too frequently'));
    }
    this.previous = { rid, empty, at: now, answeredEmpty: false };

    if (pause !== undefined) {
      const seconds = Number(pause);
      if (!/^\d+$/.test(pause) || seconds > MAX_PAUSE_SECONDS) return respondNow(this.fail('bad-request', `pause must be at most ${MAX_PAUSE_SECONDS}`));
      // XEP-0124 §10: answer everything held now; the pause response carries no payloads and is not buffered.
      this.respondThrough(this.lastRid);
      this.inactivity = seconds;
      respondNow(this.ok(this.wrap({}, [])));
      return;
    }
    this.inactivity = this.normalInactivity;
    const listener = this.listener!;
    if (restart) {
      // XEP-0206: a restart request carries no payloads.
      if (payloads.length > 0) return respondNow(this.fail('bad-request', 'a restart request must be empty'));
      const attrs: Record<string, string> = { version: '1.0' };
      if (body.attrs.to) attrs.to = body.attrs.to;
      if (body.attrs['xml:lang']) attrs['xml:lang'] = body.attrs['xml:lang'];
      listener.streamStart(attrs);
    }
    for (const payload of payloads) {
      payload.parent = null;
      listener.element(payload);
    }
    this.holdRequest({ rid, resolvers: request.resolvers });
    // XEP-0124 §13: the payloads go first; the stream's end answers the request with type='terminate'.
    if (terminate) listener.streamEnd();
  }

  private holdRequest(held: Held): void {
    this.held.push(held);
    if (this.polling) {
      // Answered at once, after whatever the request's own payloads produce in this turn.
      setImmediate(() => this.respondThrough(held.rid));
      return;
    }
    // XEP-0124 §8: no more than 'hold' requests wait; the oldest is answered.
    while (this.held.length > this.hold) this.respond(this.held[0]);
    held.timer = setTimeout(() => this.respondThrough(held.rid), this.wait * 1000);
    if (this.queue.length > 0) this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // Elements produced in the same turn travel in one response.
    setImmediate(() => {
      this.flushScheduled = false;
      if (this.open && this.queue.length > 0 && this.held.length > 0) this.respond(this.held[0]);
    });
  }

  /** Empties the queue; what it held. */
  private takeQueue(): string[] {
    const taken = this.queue;
    this.queue = [];
    this.queued = 0;
    return taken;
  }

  private respondThrough(rid: number): void {
    while (this.held.length > 0 && this.held[0].rid <= rid) this.respond(this.held[0]);
  }

  /** Answers one held request with everything queued (and the terminate attributes when ending). */
  private respond(held: Held, terminate?: { condition?: BindingCondition }, withPayloads = true): void {
    this.held = this.held.filter((h) => h !== held);
    clearTimeout(held.timer);
    const payloads = withPayloads ? this.takeQueue() : [];
    const attrs: Record<string, string> = {};
    if (held.rid === this.creationRid) Object.assign(attrs, this.creationAttributes());
    else if (this.acks && this.lastRid > held.rid) attrs.ack = String(this.lastRid); // XEP-0124 §9.1
    if (terminate) {
      attrs.type = 'terminate';
      if (terminate.condition) attrs.condition = terminate.condition;
    }
    const body = this.wrap(attrs, payloads);
    this.cache.set(held.rid, body);
    for (const rid of this.cache.keys()) if (rid <= held.rid - REQUESTS) this.cache.delete(rid);
    if (this.previous?.rid === held.rid && payloads.length === 0) this.previous.answeredEmpty = true;
    const response = terminate?.condition ? this.errorResponse(terminate.condition, body) : this.ok(body);
    for (const resolve of held.resolvers) resolve(response);
    this.updateInactivity();
  }

  /** XEP-0124 §7.2 and XEP-0206 (session creation): the attributes of the session creation response. */
  private creationAttributes(): Record<string, string> {
    const attrs: Record<string, string> = {
      sid: this.sid,
      wait: String(this.wait),
      requests: String(REQUESTS),
      hold: String(this.hold),
      inactivity: String(this.normalInactivity),
      polling: String(POLLING_SECONDS),
      maxpause: String(MAX_PAUSE_SECONDS),
      ver: this.ver,
      'xmlns:xmpp': NS.XBOSH,
      'xmpp:version': '1.0',
      'xmpp:restartlogic': 'true',
    };
    if (this.header?.from) attrs.from = this.header.from;
    if (this.header?.id) attrs.authid = this.header.id;
    if (this.acks) attrs.ack = String(this.creationRid);
    return attrs;
  }

  private wrap(attrs: Record<string, string>, payloads: string[]): string {
    let body = `<body xmlns='${NS.HTTPBIND}'`;
    // XEP-0206: a body carrying <stream:features/> or <stream:error/> declares the stream prefix.
    if (payloads.some((p) => p.startsWith('<stream:'))) body += ` xmlns:stream='${NS.STREAM}'`;
    for (const [name, value] of Object.entries(attrs)) body += ` ${name}='${escapeXML(value)}'`;
    return payloads.length === 0 ? `${body}/>` : `${body}>${payloads.join('')}</body>`;
  }

  private ok(body: string): BoshResponse {
    return { status: 200, contentType: this.contentType, body };
  }

  private errorResponse(condition: BindingCondition, body?: string): BoshResponse {
    const status = this.legacy ? (LEGACY_STATUS[condition] ?? 200) : 200;
    return { status, contentType: this.contentType, body: body ?? bindingError(condition).body };
  }

  /** A binding error caused by this request: the session ends, the request gets the condition. */
  private fail(condition: BindingCondition, reason: string): BoshResponse {
    this.log.info('BOSH session terminated', { condition, reason });
    this.terminate(undefined, reason, false);
    return this.errorResponse(condition);
  }

  /**
   * Ends the session: held requests are answered (the newest carries type='terminate' and any
   * queued payloads), the stream is told, and the registry forgets the sid.
   */
  private terminate(condition: BindingCondition | undefined, reason: string, answerNewest = true): void {
    if (!this.open) return;
    this.open = false;
    clearTimeout(this.inactivityTimer);
    for (const waiting of this.waiting.values()) for (const resolve of waiting.resolvers) resolve(this.errorResponse('item-not-found'));
    this.waiting.clear();
    while (this.held.length > 1) this.respond(this.held[0], undefined, false);
    const newest = this.held[0];
    if (newest && answerNewest) this.respond(newest, { condition });
    else if (newest) this.respond(newest, undefined, false);
    else if (answerNewest) this.finalBody = this.wrap(condition ? { type: 'terminate', condition } : { type: 'terminate' }, this.takeQueue());
    this.takeQueue();
    this.opts.onEnd(this.finalBody !== undefined);
    this.log.debug('BOSH session ended', { reason });
    const listener = this.listener;
    setImmediate(() => listener?.closed(reason));
  }

  /** XEP-0124 §10: with nothing held, the client has `inactivity` seconds to come back. */
  private updateInactivity(): void {
    clearTimeout(this.inactivityTimer);
    if (!this.open || this.held.length > 0) return;
    this.inactivityTimer = setTimeout(() => {
      this.log.info('BOSH session inactive: ending it', { inactivity: this.inactivity });
      this.terminate(undefined, 'inactivity timeout', false);
    }, this.inactivity * 1000).unref();
  }
}

function clamp(value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined || !/^\d+$/.test(value)) return fallback;
  return Math.min(max, Math.max(min, Number(value)));
}

/** XEP-0124 §7.2: our version, or the client's when lower. */
function negotiateVersion(requested: string | undefined): string {
  const ours = `${BOSH_VERSION.major}.${BOSH_VERSION.minor}`;
  const m = /^(\d+)\.(\d+)$/.exec(requested ?? '');
  if (!m) return ours;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  if (major < BOSH_VERSION.major || (major === BOSH_VERSION.major && minor < BOSH_VERSION.minor)) return `${major}.${minor}`;
  return ours;
}
