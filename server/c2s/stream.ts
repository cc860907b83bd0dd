import { randomBytes } from 'node:crypto';
import { Element } from 'ltx';
import type { Config } from '../config/types';
import { StanzaError, StreamError } from '../errors';
import { makeJID } from '../jid';
import type { Logger } from '../log';
import type { StreamStats } from '../metrics';
import type { Router } from '../router';
import type { Session } from '../sm/session';
import type { SessionManager } from '../sm/session-manager';
import type { Storage } from '../storage/types';
import { NS } from '../xml/ns';
import { offeredMechanisms } from './sasl';
import { SaslFailure, type SaslExchange, type SaslMechanism } from './sasl/mechanism';
import { ClientSink, isStanza, type StreamManagementRegistry, type StreamOutput } from './stream-management';
import type { Transport, TransportListener } from './transport';

/** A handler for IQs a client may send before it authenticates (XEP-0077 in-band registration). */
export type PreAuthIqHandler = (iq: Element, domain: string, secure: boolean) => Promise<Element>;

/** What every client stream needs from the node. */
export interface C2SContext {
  config: Config;
  logger: Logger;
  storage: Storage;
  router: Router;
  sessions: SessionManager;
  /** SASL mechanisms in preference order (built once per node, see createMechanisms). */
  mechanisms: SaslMechanism[];
  /** Set when in-band registration is enabled. */
  preAuthIq?: PreAuthIqHandler;
  /** Counts for /metrics and /status. */
  stats?: StreamStats;
  /** XEP-0198 stream management (offered when set). */
  sm?: StreamManagementRegistry;
}

type State =
  | 'wait-header' // nothing received yet (or a restart is expected)
  | 'features' // header received, features sent: negotiating
  | 'tls' // <proceed/> sent, handshake running
  | 'sasl' // SASL exchange running
  | 'bind' // authenticated, not yet bound
  | 'active' // bound: stanzas flow
  | 'closed';

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * The client-to-server stream state machine (RFC 6120 §4–§7), shared by every transport:
 * stream header, STARTTLS, SASL, resource binding, then stanzas to the router. Everything one
 * client sends is handled in order.
 */
export class C2SStream implements TransportListener {
  private state: State = 'wait-header';
  private domain = '';
  private authenticated?: string; // localpart once SASL succeeded
  private session?: Session;
  /** The session's sink while it is on this stream (stream management moves it between streams). */
  private sink?: ClientSink;
  private sasl?: { exchange: SaslExchange; username?: string };
  private authFailures = 0;
  /** Our side of the stream is closed: nothing more from this client is processed. */
  private closing = false;
  private queue: Promise<void> = Promise.resolve();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly log: Logger;

  constructor(
    private readonly transport: Transport,
    private readonly ctx: C2SContext,
  ) {
    this.log = ctx.logger.child({ conn: transport.id });
    const { streamOpenTimeout, authTimeout } = ctx.config.limits;
    this.timers.push(
      setTimeout(() => {
        if (this.state === 'wait-header' && !this.domain) this.fail(new StreamError('connection-timeout', 'no stream header received'));
      }, streamOpenTimeout * 1000).unref(),
      setTimeout(() => {
        if (!this.session) this.fail(new StreamError('policy-violation', 'authentication and resource binding took too long'));
      }, authTimeout * 1000).unref(),
    );
    this.log.debug('connected', { remote: transport.remoteAddress, transport: transport.kind });
  }

  // ---- TransportListener ----

  streamStart(attrs: Record<string, string>): void {
    this.enqueue(() => this.onHeader(attrs));
  }

  element(element: Element): void {
    this.enqueue(() => this.onElement(element));
  }

  streamEnd(): void {
    this.enqueue(async () => {
      this.log.debug('client closed the stream');
      this.close();
    });
  }

  streamError(error: StreamError): void {
    this.fail(error);
  }

  closed(reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    for (const timer of this.timers) clearTimeout(timer);
    // A connection lost (not closed by either side on purpose) leaves a resumable session waiting (XEP-0198).
    if (this.session && !(!this.closing && this.ctx.sm?.hibernate(this.session))) this.ctx.sessions.end(this.session);
    this.log.debug('disconnected', { reason });
  }

  /** The session bound on this stream, if any. */
  get boundSession(): Session | undefined {
    return this.session;
  }

  // ---- processing ----

  private enqueue(task: () => Promise<void> | void): void {
    this.queue = this.queue.then(async () => {
      // RFC 6120 §4.9.1.1: stream errors are unrecoverable; what the client sent after one is not processed.
      if (this.state === 'closed' || this.closing) return;
      try {
        await task();
      } catch (err) {
        if (err instanceof StreamError) {
          this.fail(err);
        } else {
          this.log.error('stream handler failed', { err: String((err as Error)?.stack ?? err) });
          this.fail(new StreamError('internal-server-error'));
        }
      }
    });
  }

  private fail(error: StreamError): void {
    if (this.state === 'closed' || this.closing) return;
    this.log.info('closing stream with error', { condition: error.condition, text: error.text });
    this.close(error);
  }

  /**
   * Closes our side of the stream. The session ends now, not when the socket is gone, so that
   * stanzas for it go to other resources or offline storage rather than into a closing socket.
   */
  private close(error?: StreamError): void {
    this.closing = true;
    for (const timer of this.timers) clearTimeout(timer);
    if (this.session) this.ctx.sessions.end(this.session);
    this.transport.close(error);
  }

  /** The session resumed on another stream (XEP-0198 §5): this one ends without ending it. */
  private release(): void {
    this.log.info('session resumed on another connection', { jid: this.session?.full });
    this.session = undefined;
    this.sink = undefined;
    this.closing = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.transport.close();
  }

  /** What the session bound here writes to. */
  private output(): StreamOutput {
    return {
      send: this.ctx.stats ? (el) => this.countedSend(el) : (el) => this.transport.send(el),
      flush: () => this.transport.flush?.(),
      whenWritten: () => this.transport.whenWritten?.(),
      close: (err) => this.close(err),
      release: () => this.release(),
    };
  }

  /** RFC 6120 §4.7: validate the client's header, answer with ours and the features. */
  private onHeader(attrs: Record<string, string>): void {
    if (this.state !== 'wait-header' && this.state !== 'features') {
      throw new StreamError('invalid-xml', 'unexpected stream header');
    }
    const hosts = this.ctx.router.hosts;
    const to = (attrs.to ?? '').toLowerCase().replace(/\.$/, '');
    const domain = to || (this.domain === '' ? [...hosts][0] : this.domain);
    const header: Record<string, string> = {
      id: randomBytes(12).toString('base64url'),
      from: hosts.has(domain) ? domain : [...hosts][0],
      version: '1.0',
      'xml:lang': 'en',
    };
    if (attrs.from) header.to = attrs.from;
    this.transport.sendHeader(header);
    if (!hosts.has(domain)) throw new StreamError('host-unknown', `this server does not serve ${to}`);
    if (this.domain && domain !== this.domain) throw new StreamError('host-unknown', 'the domain changed on a stream restart');
    // RFC 6120 §4.7.5: "<major>.<minor>"; none means 0.9, and what is not a number is no version either.
    if (!(Number.parseInt(attrs.version ?? '', 10) >= 1)) {
      throw new StreamError('unsupported-version', 'XMPP 1.0 or later is required');
    }
    this.domain = domain;
    this.state = this.authenticated ? 'bind' : 'features';
    this.transport.send(this.features());
  }

  private features(): Element {
    const features = new Element('stream:features');
    const { config } = this.ctx;
    if (this.authenticated) {
      features.c('bind', { xmlns: NS.BIND });
      features.c('session', { xmlns: NS.SESSION }).c('optional');
      features.c('ver', { xmlns: NS.ROSTER_VER });
      features.c('sub', { xmlns: NS.PRE_APPROVAL });
      if (this.ctx.sm) features.c('sm', { xmlns: NS.SM });
      features.c('csi', { xmlns: NS.CSI });
      return features;
    }
    if (this.transport.canStartTls && !this.transport.secure) {
      const starttls = features.c('starttls', { xmlns: NS.TLS });
      if (config.tlsRequired) {
        starttls.c('required');
        return features; // RFC 6120 §5.3.1: only STARTTLS is offered until TLS is in place
      }
    }
    const bindings = this.transport.channelBindingTypes();
    const mechanisms = features.c('mechanisms', { xmlns: NS.SASL });
    for (const mechanism of offeredMechanisms(this.transport.secure, bindings.length > 0, this.ctx.mechanisms)) {
      mechanisms.c('mechanism').t(mechanism.name);
    }
    if (bindings.length > 0) {
      const cb = features.c('sasl-channel-binding', { xmlns: NS.SASL_CB });
      for (const type of bindings) cb.c('channel-binding', { type });
    }
    if (config.registration && this.ctx.preAuthIq) features.c('register', { xmlns: NS.REGISTER_FEATURE });
    return features;
  }

  private async onElement(element: Element): Promise<void> {
    const xmlns = element.attrs.xmlns as string | undefined;
    switch (this.state) {
      case 'active':
        return this.onStanza(element);
      case 'features':
      case 'sasl':
        if (xmlns === NS.TLS && element.name === 'starttls') return this.onStartTls();
        if (xmlns === NS.SASL) return this.onSasl(element);
        if (element.name === 'iq' && this.ctx.preAuthIq && this.ctx.config.registration && (!xmlns || xmlns === NS.CLIENT)) {
          return this.onPreAuthIq(element);
        }
        throw new StreamError('not-authorized', 'authenticate first');
      case 'bind':
        if (element.name === 'iq' && (!xmlns || xmlns === NS.CLIENT)) return this.onBind(element);
        if (xmlns === NS.SM && this.ctx.sm) return this.onResume(element);
        throw new StreamError('not-authorized', 'bind a resource first');
      default:
        throw new StreamError('not-authorized', 'stream not ready');
    }
  }

  // ---- STARTTLS (RFC 6120 §5) ----

  private async onStartTls(): Promise<void> {
    if (!this.transport.canStartTls || this.transport.secure || this.sasl) {
      this.transport.send(new Element('failure', { xmlns: NS.TLS }));
      this.close();
      return;
    }
    this.state = 'tls';
    this.transport.send(new Element('proceed', { xmlns: NS.TLS }));
    try {
      await this.transport.startTls();
    } catch (err) {
      this.log.info('TLS handshake failed', { err: String(err) });
      this.close();
      return;
    }
    this.state = 'wait-header';
  }

  // ---- SASL (RFC 6120 §6) ----

  private async onSasl(element: Element): Promise<void> {
    if (this.transport.canStartTls && !this.transport.secure && this.ctx.config.tlsRequired) {
      return this.saslFailure(new SaslFailure('encryption-required'), false);
    }
    try {
      switch (element.name) {
        case 'auth': {
          if (this.sasl) throw new SaslFailure('malformed-request', 'an exchange is already running');
          const name = element.attrs.mechanism as string | undefined;
          const bindings = this.transport.channelBindingTypes();
          const mechanism = offeredMechanisms(this.transport.secure, bindings.length > 0, this.ctx.mechanisms).find((m) => m.name === name);
          if (!mechanism) throw new SaslFailure('invalid-mechanism');
          const state: { exchange: SaslExchange; username?: string } = {
            exchange: mechanism.start({
              domain: this.domain,
              secure: this.transport.secure,
              channelBinding: (type) => this.transport.channelBinding(type),
              lookupCredentials: async (username, hash) => {
                state.username = username;
                const jid = `${username}@${this.domain}`;
                await this.checkLockout(jid);
                return (await this.ctx.storage.users.get(jid))?.credentials[hash];
              },
            }),
          };
          this.sasl = state;
          this.state = 'sasl';
          const text = element.getText();
          // RFC 6120 §6.4.2: no text means no initial response; "=" means an empty one.
          if (text === '') return this.saslChallenge(Buffer.alloc(0));
          return await this.saslStep(decodeBase64(text));
        }
        case 'response':
          if (!this.sasl) throw new SaslFailure('malformed-request', 'no exchange is running');
          return await this.saslStep(decodeBase64(element.getText()));
        case 'abort':
          throw new SaslFailure('aborted');
        default:
          throw new SaslFailure('malformed-request');
      }
    } catch (err) {
      if (err instanceof SaslFailure) return this.saslFailure(err, true);
      throw err;
    }
  }

  private async saslStep(response: Buffer): Promise<void> {
    const step = await this.sasl!.exchange.step(response);
    if (step.kind === 'challenge') return this.saslChallenge(step.data);
    const jid = `${step.username}@${this.domain}`;
    this.sasl = undefined;
    this.authenticated = step.username;
    this.ctx.stats?.authSuccess();
    void this.ctx.storage.authFailures.reset(jid).catch(() => undefined);
    this.log.info('authenticated', { jid, transport: this.transport.kind });
    const success = new Element('success', { xmlns: NS.SASL });
    if (step.data && step.data.length > 0) success.t(step.data.toString('base64'));
    this.transport.send(success);
    // RFC 6120 §6.4.6: both sides restart the stream after success.
    this.state = 'wait-header';
    this.transport.restart();
  }

  private saslChallenge(data: Buffer): void {
    this.transport.send(new Element('challenge', { xmlns: NS.SASL }).t(data.length ? data.toString('base64') : '='));
  }

  /**
   * RFC 6120 §6.4.5: a failure allows a retry, up to maxAuthFailures per connection; failures
   * for an account also count cluster-wide (through the database) towards a lockout.
   */
  private async saslFailure(failure: SaslFailure, counts: boolean): Promise<void> {
    const username = this.sasl?.username ?? this.sasl?.exchange.username;
    this.sasl = undefined;
    this.state = 'features';
    const reply = new Element('failure', { xmlns: NS.SASL });
    reply.c(failure.condition);
    if (failure.text) reply.c('text', { 'xml:lang': 'en' }).t(failure.text);
    this.transport.send(reply);
    if (!counts || failure.condition === 'aborted') return;
    // Only a wrong password counts towards the account's lockout: a channel-binding or protocol
    // failure says nothing about who knows the password.
    if (failure.wrongCredentials && username) {
      this.ctx.stats?.authFailure();
      const { authLockout } = this.ctx.config.limits;
      await this.ctx.storage.authFailures.record(`${username}@${this.domain}`, authLockout * 1000);
    }
    this.log.warn('authentication failed', {
      condition: failure.condition, reason: failure.text ?? (failure.wrongCredentials ? 'wrong password or unknown user' : undefined),
      user: username, remote: this.transport.remoteAddress, transport: this.transport.kind,
    });
    if (++this.authFailures >= this.ctx.config.limits.maxAuthFailures) {
      throw new StreamError('policy-violation', 'too many failed authentication attempts');
    }
  }

  private async checkLockout(jid: string): Promise<void> {
    const { maxAccountAuthFailures, authLockout } = this.ctx.config.limits;
    const failures = await this.ctx.storage.authFailures.count(jid, authLockout * 1000);
    if (failures >= maxAccountAuthFailures) {
      throw new SaslFailure('temporary-auth-failure', 'too many failed attempts for this account; try again later');
    }
  }

  private async onPreAuthIq(iq: Element): Promise<void> {
    if (this.transport.canStartTls && !this.transport.secure && this.ctx.config.tlsRequired) {
      throw new StreamError('policy-violation', 'STARTTLS is required first');
    }
    this.transport.send(await this.ctx.preAuthIq!(iq, this.domain, this.transport.secure));
  }

  // ---- resource binding (RFC 6120 §7) ----

  private onBind(iq: Element): void {
    const bind = iq.getChild('bind', NS.BIND);
    const reply = (child?: Element, error?: StanzaError) => {
      const result = new Element('iq', { type: error ? 'error' : 'result', id: iq.attrs.id });
      if (child) result.cnode(child);
      if (error) result.cnode(error.toElement());
      this.transport.send(result);
    };
    if (iq.attrs.type !== 'set' || !bind) {
      // Answer anything else politely; binding is still required.
      if (iq.attrs.type === 'get' || iq.attrs.type === 'set') reply(undefined, new StanzaError('not-authorized', 'bind a resource first'));
      return;
    }
    const requested = bind.getChildText('resource')?.trim() || undefined;
    if (requested !== undefined) {
      try {
        makeJID(this.authenticated!, this.domain, requested);
      } catch {
        return reply(undefined, new StanzaError('bad-request', 'invalid resource'));
      }
    }
    this.sink = new ClientSink(this.transport.id, this.output(), this.ctx.config.limits.smMaxUnacked);
    this.session = this.ctx.sessions.bind(this.sink, this.authenticated!, this.domain, requested);
    for (const timer of this.timers) clearTimeout(timer);
    this.state = 'active';
    this.log.info('session bound', { jid: this.session.full });
    const result = new Element('bind', { xmlns: NS.BIND });
    result.c('jid').t(this.session.full);
    reply(result);
  }

  private async onStanza(element: Element): Promise<void> {
    const xmlns = element.attrs.xmlns as string | undefined;
    if (xmlns === NS.SM && this.ctx.sm) return this.onStreamManagement(element);
    if (xmlns === NS.CSI && (element.name === 'active' || element.name === 'inactive')) {
      // XEP-0352: a nonza, not counted by stream management.
      this.sink!.setActive(element.name === 'active');
      return;
    }
    if (xmlns && xmlns !== NS.CLIENT) {
      throw new StreamError('invalid-namespace', `<${element.name}/> in namespace ${xmlns}`);
    }
    const sm = this.sink?.sm;
    // XEP-0198 §4: 'h' counts what the server has handled; a stanza routed is handled.
    if (sm && isStanza(element)) sm.handled = (sm.handled + 1) >>> 0;
    // RFC 6120 §7.1 legacy session establishment (RFC 3921) is a no-op kept for old clients.
    if (element.name === 'iq' && element.attrs.type === 'set' && element.getChild('session', NS.SESSION) && !element.attrs.to) {
      this.session!.send(new Element('iq', { type: 'result', id: element.attrs.id }));
      return;
    }
    const stats = this.ctx.stats;
    if (!stats) return this.ctx.router.fromClient(this.session!, element);
    stats.stanzaIn(element.name);
    const started = performance.now();
    await this.ctx.router.fromClient(this.session!, element);
    stats.routed(performance.now() - started);
  }

  // ---- stream management (XEP-0198) ----

  /** <enable/>, <r/> and <a/> on a bound stream. */
  private onStreamManagement(element: Element): void {
    const sink = this.sink!;
    switch (element.name) {
      case 'enable': {
        if (sink.sm) return this.transport.send(smFailed('unexpected-request', 'stream management is already enabled'));
        const resume = element.attrs.resume === 'true' || element.attrs.resume === '1';
        const max = Number(element.attrs.max);
        this.transport.send(this.ctx.sm!.enable(this.session!, sink, resume, Number.isFinite(max) ? max : undefined));
        this.log.debug('stream management enabled', { resume });
        return;
      }
      case 'r':
        if (!sink.sm) throw new StreamError('unsupported-stanza-type', 'stream management is not enabled');
        this.transport.send(new Element('a', { xmlns: NS.SM, h: String(sink.sm.handled) }));
        return;
      case 'a': {
        if (!sink.sm) throw new StreamError('unsupported-stanza-type', 'stream management is not enabled');
        const h = Number(element.attrs.h);
        if (!Number.isSafeInteger(h) || h < 0 || !sink.acknowledge(h)) throw handledCountTooHigh(h, sink);
        return;
      }
      case 'resume':
        return this.transport.send(smFailed('unexpected-request', 'a bound stream cannot resume another session'));
      default:
        throw new StreamError('unsupported-stanza-type', `<${element.name}/> in namespace ${NS.SM}`);
    }
  }

  /** XEP-0198 §5: <resume previd h/> after authentication, instead of binding. */
  private async onResume(element: Element): Promise<void> {
    if (element.name === 'enable') return this.transport.send(smFailed('unexpected-request', 'bind a resource first'));
    if (element.name !== 'resume') throw new StreamError('not-authorized', 'bind a resource first');
    const h = Number(element.attrs.h);
    const previd = String(element.attrs.previd ?? '');
    if (!Number.isSafeInteger(h) || h < 0 || !previd) return this.transport.send(smFailed('bad-request', 'resume needs previd and h'));
    const result = await this.ctx.sm!.resumeAnywhere(previd, `${this.authenticated}@${this.domain}`, h, this.output(), this.domain);
    if (typeof result !== 'string' && (this.closing || this.state === 'closed')) {
      // The connection went away while the session was being fetched: it waits for the next one.
      result.sink.detach();
      if (!this.ctx.sm!.hibernate(result.session)) this.ctx.sessions.end(result.session);
      return;
    }
    if (typeof result === 'string') {
      this.log.info('stream resumption failed', { previd, reason: result });
      return this.transport.send(smFailed(result, result === 'item-not-found' ? 'no such session to resume (it expired or ended)' : 'the acknowledged count is higher than what was sent'));
    }
    this.session = result.session;
    this.sink = result.sink;
    for (const timer of this.timers) clearTimeout(timer);
    this.state = 'active';
    this.log.info('session resumed', { jid: this.session.full, resent: result.resend.length });
    this.transport.send(new Element('resumed', { xmlns: NS.SM, previd, h: String(result.sink.sm!.handled) }));
    for (const stanza of result.resend) this.output().send(stanza);
    this.ctx.sm!.afterResume(result.session);
  }

  private countedSend(element: Element): void {
    this.ctx.stats!.stanzaOut(element.name);
    this.transport.send(element);
  }
}

function decodeBase64(text: string): Buffer {
  const trimmed = text.trim();
  if (trimmed === '=') return Buffer.alloc(0);
  if (!BASE64.test(trimmed) || trimmed.length % 4 !== 0) throw new SaslFailure('incorrect-encoding');
  return Buffer.from(trimmed, 'base64');
}

function smFailed(condition: string, text?: string): Element {
  const failed = new Element('failed', { xmlns: NS.SM });
  failed.c(condition, { xmlns: NS.STANZAS });
  if (text) failed.c('text', { xmlns: NS.STANZAS }).t(text);
  return failed;
}

/** XEP-0198 §4: an acknowledgement of more than was sent ends the stream. */
function handledCountTooHigh(h: number, sink: ClientSink): StreamError {
  const sent = (sink.sm?.acked ?? 0) + (sink.sm?.unacked.length ?? 0);
  return new StreamError('undefined-condition', `handled-count-too-high: h='${h}' but only ${sent} stanzas were sent`);
}
