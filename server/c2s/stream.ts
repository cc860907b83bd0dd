import { createHash, randomBytes } from 'node:crypto';
import { Element } from 'ltx';
import type { Config } from '../config/types';
import { StanzaError, StreamError } from '../errors';
import { makeJID } from '../jid';
import { hostOf, normaliseAddress } from '../net-address';
import { STORAGE_LIMITS } from '../storage/limits';
import type { Logger } from '../log';
import type { StreamStats } from '../metrics';
import type { Router } from '../router';
import type { Session } from '../sm/session';
import type { SessionManager } from '../sm/session-manager';
import type { Storage } from '../storage/types';
import { NS } from '../xml/ns';
import { offeredMechanisms } from './sasl';
import { FastTokens, HT_MECHANISMS, HtExchange } from './sasl/fast';
import { decodeSaslData, SaslFailure, type SaslExchange, type SaslMechanism, type SaslStep } from './sasl/mechanism';
import { bind2Resource, parseAuthenticate, sasl2Failure, type Sasl2Request } from './sasl2';
import { ClientSink, isStanza, type ResumeFailure, type Resumed, type StreamManagementRegistry, type StreamOutput } from './stream-management';
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
  /** XEP-0484 FAST tokens (offered inline in SASL2 when set). */
  fast?: FastTokens;
  /** The node's open client streams (every transport), for shutdown() and pauseReading(). */
  streams?: Set<C2SStream>;
  /** True while the node reads nothing from clients (ArchiveBacklog): a new stream starts held. */
  held?: () => boolean;
}

/** A SASL exchange under way: RFC 6120 <auth/>, or XEP-0388 <authenticate/> with its inline requests. */
interface SaslState {
  mechanism: string;
  exchange: SaslExchange;
  username?: string;
  /** Set for SASL2. */
  request?: Sasl2Request;
}

type State =
  | 'wait-header' // nothing received yet (or a restart is expected)
  | 'features' // header received, features sent: negotiating
  | 'tls' // <proceed/> sent, handshake running
  | 'sasl' // SASL exchange running
  | 'bind' // authenticated, not yet bound
  | 'active' // bound: stanzas flow
  | 'closed';

/** Each wrong password beyond the limit, from any address, delays the account's logins this much more [250 ms]. */
const AUTH_DELAY_STEP_MS = 250;
/** The longest such delay [5000 ms]. */
const AUTH_DELAY_MAX_MS = 5000;

/**
 * The auth-failure counters of a login: the account's (every address), the account's from this
 * client's address, and the address's (every account: one address guessing many accounts' passwords).
 * A key too long for the column is hashed (the count is what matters).
 */
export function authFailureKeys(jid: string, remoteAddress: string): { account: string; client: string; address: string } {
  const fit = (key: string) => ([...key].length <= STORAGE_LIMITS.authKey ? key : `sha256:${createHash('sha256').update(key).digest('hex')}`);
  const host = normaliseAddress(hostOf(remoteAddress));
  return { account: fit(jid), client: fit(`${jid} from ${host}`), address: fit(`from ${host}`) };
}

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
  private sasl?: SaslState;
  private authFailures = 0;
  /** A counted stanza (XEP-0198) is being routed right now. */
  private routing = false;
  /** The account row a password exchange read (for its disabled check at the end). */
  private loginAccount?: { jid: string; user: Awaited<ReturnType<C2SContext['storage']['users']['get']>> };
  /** Failed logins to the account from this address that the lockout check counted (none: nothing to reset). */
  private failuresHere?: { jid: string; count: number };
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
    ctx.streams?.add(this);
    if (ctx.held?.()) transport.pauseReading?.(true);
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
    this.ctx.streams?.delete(this);
    if (this.state === 'closed') return;
    this.state = 'closed';
    for (const timer of this.timers) clearTimeout(timer);
    // A connection lost (not closed by either side on purpose) leaves a resumable session waiting (XEP-0198).
    const session = this.session;
    const waiting = !!session && !this.closing && !!this.ctx.sm?.hibernate(session);
    if (session && !waiting) this.ctx.sessions.end(session);
    if (session) {
      this.log.info(waiting ? 'connection lost; the session waits to be resumed' : 'logged out', {
        jid: session.full, reason, remote: this.transport.remoteAddress, transport: this.transport.kind,
      });
    } else {
      this.log.debug('disconnected', { reason });
    }
  }

  /**
   * XEP-0198 where it applies: TCP and WebSocket. A BOSH session already outlives its HTTP
   * connections and has its own acknowledgements (XEP-0124 §9), so it is not offered there.
   */
  private get sm(): StreamManagementRegistry | undefined {
    return this.transport.kind === 'bosh' ? undefined : this.ctx.sm;
  }

  /** Stops or goes back to reading from the client (the node cannot keep up meanwhile). */
  pauseReading(held: boolean): void {
    this.transport.pauseReading?.(held);
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

  /**
   * The node is stopping: the client gets the XEP-0198 <a h/> of what was handled and the error. A
   * resumable session waits from this moment (not from when the socket is gone), so the client
   * resumes it on another node, which takes it over with what it had not acknowledged: nothing
   * twice. The node ends whatever still waits before it closes its links (endHibernating); any
   * other session ends now, its unacknowledged stanzas going to other resources or offline storage.
   */
  shutdown(error: StreamError): void {
    if (this.state === 'closed' || this.closing) return;
    const session = this.session;
    if (!session || !this.sink?.sm) return this.close(error);
    this.sendHandled();
    if (!this.ctx.sm?.hibernate(session)) return this.close(error);
    this.log.info('node stopping; the session waits to be resumed on another node', { jid: session.full });
    this.session = undefined;
    this.sink = undefined;
    this.closing = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.transport.close(error);
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
    // A client that cannot resume (its node is stopping) then resends only the rest.
    if (!this.closing) this.sendHandled();
    this.closing = true;
    for (const timer of this.timers) clearTimeout(timer);
    if (this.session) this.ctx.sessions.end(this.session);
    this.transport.close(error);
  }

  /**
   * XEP-0198 §4: a party closing the stream tells the other how many of its stanzas it handled. A
   * stanza still being routed is not counted: the client sends it again (a duplicate, never a loss).
   */
  private sendHandled(): void {
    const sm = this.sink?.sm;
    if (sm) this.transport.send(new Element('a', { xmlns: NS.SM, h: String((sm.handled - (this.routing ? 1 : 0)) >>> 0) }));
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
      // Closed with an error (e.g. too many stanzas unacknowledged): logged as any stream error.
      close: (err) => (err ? this.fail(err) : this.close()),
      release: () => this.release(),
      info: { address: this.transport.remoteAddress, transport: this.transport.kind },
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
      // After SASL2 with Bind2 the session is bound already (XEP-0388: features follow <success/>).
      if (!this.session) {
        features.c('bind', { xmlns: NS.BIND });
        features.c('session', { xmlns: NS.SESSION }).c('optional');
      }
      features.c('ver', { xmlns: NS.ROSTER_VER });
      features.c('sub', { xmlns: NS.PRE_APPROVAL });
      // Not once enabled inline: a client would take <sm/> as its cue to resume on this very stream.
      if (this.sm && !this.sink?.sm) features.c('sm', { xmlns: NS.SM });
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
    const offered = offeredMechanisms(this.transport.secure, bindings.length > 0, this.ctx.mechanisms);
    const mechanisms = features.c('mechanisms', { xmlns: NS.SASL });
    for (const mechanism of offered) mechanisms.c('mechanism').t(mechanism.name);
    if (bindings.length > 0) {
      const cb = features.c('sasl-channel-binding', { xmlns: NS.SASL_CB });
      for (const type of bindings) cb.c('channel-binding', { type });
    }
    features.cnode(this.sasl2Feature(offered, bindings));
    if (config.registration && this.ctx.preAuthIq) features.c('register', { xmlns: NS.REGISTER_FEATURE });
    return features;
  }

  /** XEP-0388 with what can be done inline: XEP-0198 resumption, XEP-0386 Bind2, XEP-0484 FAST (on TLS). */
  private sasl2Feature(offered: SaslMechanism[], bindings: string[]): Element {
    const authentication = new Element('authentication', { xmlns: NS.SASL2 });
    for (const mechanism of offered) authentication.c('mechanism').t(mechanism.name);
    const inline = authentication.c('inline');
    if (this.sm) inline.c('sm', { xmlns: NS.SM });
    const bind = inline.c('bind', { xmlns: NS.BIND2 }).c('inline');
    if (this.sm) bind.c('feature', { var: NS.SM });
    bind.c('feature', { var: NS.CARBONS });
    bind.c('feature', { var: NS.CSI });
    if (this.ctx.fast && this.transport.secure) {
      const fast = inline.c('fast', { xmlns: NS.FAST });
      for (const name of this.ctx.fast.offered(bindings)) fast.c('mechanism').t(name);
    }
    return authentication;
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
        if (xmlns === NS.SASL2) return this.onSasl(element, 'sasl2');
        if (element.name === 'iq' && this.ctx.preAuthIq && this.ctx.config.registration && (!xmlns || xmlns === NS.CLIENT)) {
          return this.onPreAuthIq(element);
        }
        throw new StreamError('not-authorized', 'authenticate first');
      case 'bind':
        if (element.name === 'iq' && (!xmlns || xmlns === NS.CLIENT)) return this.onBind(element);
        if (xmlns === NS.SM && this.sm) return this.onResume(element);
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

  // ---- SASL (RFC 6120 §6) and SASL2 (XEP-0388) ----

  private async onSasl(element: Element, profile: 'rfc6120' | 'sasl2' = 'rfc6120'): Promise<void> {
    if (this.transport.canStartTls && !this.transport.secure && this.ctx.config.tlsRequired) {
      return this.saslFailure(new SaslFailure('encryption-required'), false, profile);
    }
    try {
      if (element.name === (profile === 'sasl2' ? 'authenticate' : 'auth')) {
        if (this.sasl) throw new SaslFailure('malformed-request', 'an exchange is already running');
        const request = profile === 'sasl2' ? parseAuthenticate(element) : undefined;
        const mechanism = String(request?.mechanism ?? element.attrs.mechanism ?? '');
        const state: SaslState = { mechanism, request, exchange: undefined as unknown as SaslExchange };
        state.exchange = this.startExchange(mechanism, request, (username) => {
          state.username = username;
        });
        this.sasl = state;
        this.state = 'sasl';
        // RFC 6120 §6.4.2: no text means no initial response, "=" an empty one; SASL2 leaves the element out.
        const text = element.getText();
        const initial = request ? request.initialResponse : text === '' ? undefined : decodeSaslData(text);
        if (initial === undefined) return this.saslChallenge(Buffer.alloc(0));
        return await this.saslStep(initial);
      }
      switch (element.name) {
        case 'response':
          if (!this.sasl || (this.sasl.request ? 'sasl2' : 'rfc6120') !== profile) throw new SaslFailure('malformed-request', 'no exchange is running');
          return await this.saslStep(decodeSaslData(element.getText()));
        case 'abort':
          throw new SaslFailure('aborted');
        default:
          throw new SaslFailure('malformed-request');
      }
    } catch (err) {
      if (err instanceof SaslFailure) return this.saslFailure(err, true, profile);
      throw err;
    }
  }

  /** The exchange of an offered mechanism: a password one, or (SASL2 on TLS) a FAST token one. */
  private startExchange(name: string, request: Sasl2Request | undefined, named: (username: string) => void): SaslExchange {
    const bindings = this.transport.channelBindingTypes();
    const fast = this.ctx.fast;
    if (request && fast && this.transport.secure && fast.offered(bindings).includes(name)) {
      const binding = HT_MECHANISMS.find((m) => m.name === name)!.binding;
      const cbData = binding ? this.transport.channelBinding(binding) : Buffer.alloc(0);
      if (!cbData) throw new SaslFailure('invalid-mechanism');
      return fast.exchange(name, this.domain, FastTokens.clientKey(request.userAgentId), cbData);
    }
    const mechanism = offeredMechanisms(this.transport.secure, bindings.length > 0, this.ctx.mechanisms).find((m) => m.name === name);
    if (!mechanism) throw new SaslFailure('invalid-mechanism');
    return mechanism.start({
      domain: this.domain,
      secure: this.transport.secure,
      channelBinding: (type) => this.transport.channelBinding(type),
      lookupCredentials: async (username, hash) => {
        named(username);
        const jid = `${username}@${this.domain}`;
        await this.checkLockout(jid);
        const user = await this.ctx.storage.users.get(jid);
        // Kept for the end of the exchange (is the account disabled?): one read per login.
        this.loginAccount = { jid, user };
        return user?.credentials[hash];
      },
    });
  }

  private async saslStep(response: Buffer): Promise<void> {
    const { exchange, request, mechanism } = this.sasl!;
    const step = await exchange.step(response);
    if (step.kind === 'challenge') return this.saslChallenge(step.data);
    const jid = `${step.username}@${this.domain}`;
    // Asked only once the credentials are proven, so that it tells a stranger nothing.
    const account = this.loginAccount?.jid === jid ? this.loginAccount.user : await this.ctx.storage.users.get(jid);
    this.loginAccount = undefined;
    if (account?.disabledAt) {
      throw new SaslFailure('account-disabled', 'this account is disabled by an administrator');
    }
    this.sasl = undefined;
    this.authenticated = step.username;
    this.transport.authenticated?.();
    this.ctx.stats?.authSuccess();
    // The owner's own address starts afresh; guesses from elsewhere still count. A database write
    // on every login only where the lockout check found failures to forget.
    if (this.failuresHere?.jid !== jid || this.failuresHere.count > 0) {
      void this.ctx.storage.authFailures.reset(authFailureKeys(jid, this.transport.remoteAddress).client).catch(() => undefined);
    }
    this.failuresHere = undefined;
    this.log.info('authenticated', { jid, transport: this.transport.kind, mechanism, sasl2: request ? true : undefined });
    if (request) return this.sasl2Success(step, request, exchange);
    const success = new Element('success', { xmlns: NS.SASL });
    if (step.data && step.data.length > 0) success.t(step.data.toString('base64'));
    this.transport.send(success);
    // RFC 6120 §6.4.6: both sides restart the stream after success.
    this.state = 'wait-header';
    this.transport.restart();
  }

  private saslChallenge(data: Buffer): void {
    if (this.sasl?.request) {
      this.transport.send(new Element('challenge', { xmlns: NS.SASL2 }).t(data.toString('base64')));
      return;
    }
    this.transport.send(new Element('challenge', { xmlns: NS.SASL }).t(data.length ? data.toString('base64') : '='));
  }

  /**
   * XEP-0388 §2.6.1: <success/> carries what was asked inline — a resumed session (XEP-0198), or a
   * session bound with Bind2 (XEP-0386) and its inline SM, carbons and CSI — and a FAST token
   * (XEP-0484); the stream is not restarted, and the features of the authenticated stream follow.
   */
  private async sasl2Success(step: Extract<SaslStep, { kind: 'success' }>, request: Sasl2Request, exchange: SaslExchange): Promise<void> {
    const bare = `${step.username}@${this.domain}`;
    const success = new Element('success', { xmlns: NS.SASL2 });
    if (step.data && step.data.length > 0) success.c('additional-data').t(step.data.toString('base64'));
    const authzid = success.c('authorization-identifier');
    const token = await this.fastToken(bare, request, exchange);
    // The connection went away while the database answered: nothing to bind it to.
    if (this.closing || this.state === 'closed') return;
    if (request.resume && this.sm) {
      const result = await this.resumeSession(request.resume.previd, request.resume.h);
      if (result === undefined) return;
      if (typeof result !== 'string') {
        authzid.t(result.session.full);
        success.c('resumed', { xmlns: NS.SM, previd: request.resume.previd, h: String(result.sink.sm!.handled) });
        if (token) success.cnode(token);
        this.transport.send(success);
        // XEP-0198 §5: a resumed stream gets no new features.
        return this.activateResumed(result);
      }
      // XEP-0198: the failure goes into <success/> and Bind2 goes on (before <bound/>, which the
      // client handles after it).
      success.cnode(smFailed(result, resumeFailureText(result)));
    }
    if (request.bind) {
      const session = this.bindSession(bind2Resource(bare, request.bind.tag, request.userAgentId));
      authzid.t(session.full);
      const bound = success.c('bound', { xmlns: NS.BIND2 });
      const { sm, carbons, inactive } = request.bind;
      if (sm && this.sm) bound.cnode(this.sm.enable(session, this.sink!, sm.resume, sm.max));
      if (carbons) this.ctx.sessions.setCarbons(session, true);
      if (inactive) this.sink!.setActive(false);
    } else {
      authzid.t(bare);
      this.state = 'bind';
    }
    if (token) success.cnode(token);
    this.transport.send(success);
    this.transport.send(this.features());
  }

  /**
   * XEP-0484 after a SASL2 login: a token used with invalidate stops working; one used for a while
   * is replaced; one asked for with <request-token/> is issued (to a client with a user-agent id).
   */
  private async fastToken(bare: string, request: Sasl2Request, exchange: SaslExchange): Promise<Element | undefined> {
    const fast = this.ctx.fast;
    if (!fast) return undefined;
    const match = exchange instanceof HtExchange ? exchange.match : undefined;
    const client = FastTokens.clientKey(request.userAgentId);
    let mechanism: string | undefined;
    if (match) {
      if (request.invalidate) await fast.revoke(match);
      else {
        await fast.used(match);
        if (fast.dueForRotation(match)) mechanism = match.token.mechanism;
      }
    }
    const offered = fast.offered(this.transport.channelBindingTypes());
    if (request.requestToken !== undefined && offered.includes(request.requestToken)) mechanism = request.requestToken;
    if (!mechanism || !client || !this.transport.secure) return undefined;
    const issued = await fast.issue(bare, client, mechanism);
    this.log.debug('FAST token issued', { jid: bare, mechanism, expiry: issued.expiry.toISOString() });
    return new Element('token', { xmlns: NS.FAST, token: issued.token, expiry: issued.expiry.toISOString() });
  }

  /**
   * RFC 6120 §6.4.5: a failure allows a retry, up to maxAuthFailures per connection; failures
   * for an account also count cluster-wide (through the database) towards a lockout.
   */
  private async saslFailure(failure: SaslFailure, counts: boolean, profile: 'rfc6120' | 'sasl2'): Promise<void> {
    const username = this.sasl?.username ?? this.sasl?.exchange.username;
    const mechanism = this.sasl?.mechanism;
    this.sasl = undefined;
    this.state = 'features';
    if (profile === 'sasl2') {
      this.transport.send(sasl2Failure(failure.condition, failure.text));
    } else {
      const reply = new Element('failure', { xmlns: NS.SASL });
      reply.c(failure.condition);
      if (failure.text) reply.c('text', { 'xml:lang': 'en' }).t(failure.text);
      this.transport.send(reply);
    }
    if (!counts || failure.condition === 'aborted') return;
    // Only a wrong password counts towards the account's lockout: a channel-binding or protocol
    // failure says nothing about who knows the password, and neither does a stale FAST token.
    if (failure.wrongCredentials && username) {
      this.ctx.stats?.authFailure();
      const { authLockout } = this.ctx.config.limits;
      const keys = authFailureKeys(`${username}@${this.domain}`, this.transport.remoteAddress);
      await Promise.all([keys.client, keys.account, keys.address].map((key) => this.ctx.storage.authFailures.record(key, authLockout * 1000)));
    }
    this.log.warn('authentication failed', {
      condition: failure.condition, reason: failure.text ?? (failure.wrongCredentials ? 'wrong password or unknown user' : undefined),
      user: username, remote: this.transport.remoteAddress, transport: this.transport.kind, mechanism,
    });
    if (++this.authFailures >= this.ctx.config.limits.maxAuthFailures) {
      throw new StreamError('policy-violation', 'too many failed authentication attempts');
    }
  }

  /**
   * Password guessing (DESIGN: abuse limits never lock an owner out). Wrong passwords are counted
   * per account and client address, cluster-wide: an address that reached
   * --max-account-auth-failures for an account gets temporary-auth-failure for it until
   * --auth-lockout has passed, while the owner elsewhere logs in as usual. Guessing from many
   * addresses slows every password login of the account (a growing delay, at most
   * AUTH_DELAY_MAX_MS) but never refuses the right password. One address guessing many accounts
   * (beyond --max-address-auth-failures, unless exempt) has its password logins slowed the same way.
   */
  private async checkLockout(jid: string): Promise<void> {
    const { maxAccountAuthFailures, maxAddressAuthFailures, authLockout } = this.ctx.config.limits;
    const keys = authFailureKeys(jid, this.transport.remoteAddress);
    const [fromHere, everywhere, thisAddress] = await this.ctx.storage.authFailures.counts([keys.client, keys.account, keys.address], authLockout * 1000);
    this.failuresHere = { jid, count: fromHere };
    if (fromHere >= maxAccountAuthFailures) {
      throw new SaslFailure('temporary-auth-failure', 'too many failed attempts for this account from your address; try again later');
    }
    const beyond = (count: number, max: number) => (max > 0 && count >= max ? count - max + 1 : 0);
    const exempt = this.ctx.config.connectionLimitsExempt.includes(normaliseAddress(hostOf(this.transport.remoteAddress)));
    const steps = Math.max(beyond(everywhere, maxAccountAuthFailures), exempt ? 0 : beyond(thisAddress, maxAddressAuthFailures));
    if (steps > 0) {
      const delay = Math.min(AUTH_DELAY_MAX_MS, AUTH_DELAY_STEP_MS * steps);
      this.ctx.stats?.authDelayed(everywhere >= maxAccountAuthFailures ? 'account' : 'address');
      this.log.info('password login delayed: too many wrong passwords', { jid, remote: this.transport.remoteAddress, delayMs: delay, accountFailures: everywhere, addressFailures: thisAddress });
      await new Promise((resolve) => setTimeout(resolve, delay));
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
    const session = this.bindSession(requested);
    const result = new Element('bind', { xmlns: NS.BIND });
    result.c('jid').t(session.full);
    reply(result);
  }

  /** The login deadlines are met: they are dropped, not kept for the life of the connection. */
  private clearTimers(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.length = 0;
  }

  /** Binds the resource (or a random one) to a new session on this stream: stanzas flow from now on. */
  private bindSession(resource: string | undefined): Session {
    this.sink = new ClientSink(this.transport.id, this.output(), this.ctx.config.limits.smMaxUnacked);
    this.session = this.ctx.sessions.bind(this.sink, this.authenticated!, this.domain, resource);
    this.clearTimers();
    this.state = 'active';
    this.log.info('session bound', { jid: this.session.full });
    return this.session;
  }

  private async onStanza(element: Element): Promise<void> {
    const xmlns = element.attrs.xmlns as string | undefined;
    if (xmlns === NS.SM && this.sm) return this.onStreamManagement(element);
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
    if (sm && isStanza(element)) {
      sm.handled = (sm.handled + 1) >>> 0;
      this.routing = true;
    }
    try {
      await this.routeStanza(element);
    } finally {
      this.routing = false;
    }
  }

  private async routeStanza(element: Element): Promise<void> {
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
    const result = await this.resumeSession(previd, h);
    if (result === undefined) return;
    if (typeof result === 'string') return this.transport.send(smFailed(result, resumeFailureText(result)));
    this.transport.send(new Element('resumed', { xmlns: NS.SM, previd, h: String(result.sink.sm!.handled) }));
    this.activateResumed(result);
  }

  /**
   * Fetches the session `previd` (from whichever node holds it). Undefined when this connection
   * went away meanwhile: the session then waits for the next one.
   */
  private async resumeSession(previd: string, h: number): Promise<Resumed | ResumeFailure | undefined> {
    const result = await this.ctx.sm!.resumeAnywhere(previd, `${this.authenticated}@${this.domain}`, h, this.output(), this.domain);
    if (typeof result === 'string') {
      this.log.info('stream resumption failed', { previd, reason: result });
      return result;
    }
    if (this.closing || this.state === 'closed') {
      result.sink.detach();
      if (!this.ctx.sm!.hibernate(result.session)) this.ctx.sessions.end(result.session);
      return undefined;
    }
    return result;
  }

  /** The resumed session is this stream's: what the client had not acknowledged is sent again. */
  private activateResumed(result: Resumed): void {
    this.session = result.session;
    this.sink = result.sink;
    this.clearTimers();
    this.state = 'active';
    this.log.info('session resumed', { jid: this.session.full, resent: result.resend.length });
    for (const stanza of result.resend) this.output().send(stanza);
    this.ctx.sm!.afterResume(result.session);
  }

  private countedSend(element: Element): void {
    this.ctx.stats!.stanzaOut(element.name);
    this.transport.send(element);
  }
}

function resumeFailureText(failure: ResumeFailure): string {
  return failure === 'item-not-found' ? 'no such session to resume (it expired or ended)' : 'the acknowledged count is higher than what was sent';
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
