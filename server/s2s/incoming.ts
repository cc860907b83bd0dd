import { randomBytes } from 'node:crypto';
import { Element } from 'ltx';
import type { Transport, TransportListener } from '../c2s/transport';
import { StreamError } from '../errors';
import { tryParseJID, type JID } from '../jid';
import type { Logger } from '../log';
import { NS } from '../xml/ns';
import { certificateProves } from './certificates';
import { dialbackElement, dialbackKind, type DialbackKeys } from './dialback';
import type { S2SAuth } from './outgoing';

/** What an incoming server stream needs from the node. */
export interface IncomingContext {
  /** Domains this node answers for on s2s: its hosts and their components' subdomains. */
  serves(domain: string): boolean;
  keys: DialbackKeys;
  tlsRequired: boolean;
  /** Accept a domain only when the peer's certificate proves it (--s2s-verify-certs); else dialback alone may. */
  verifyCerts: boolean;
  /** Seconds a peer has to authenticate a domain (or finish its dialback checks) before the stream is closed (--auth-timeout). */
  authTimeout: number;
  /** Asks `originating`'s authoritative server whether `key` is valid for stream `id` (the receiving server's side of dialback). */
  verifyKey(receiving: string, originating: string, id: string, key: string): Promise<boolean>;
  /** A stanza from an authenticated remote domain, for one of ours. */
  deliver(stanza: Element, from: JID, to: JID): void;
  /** This stream was authorised for stanzas from `remote` to `local` (by `method`) / it ended. */
  authorised(stream: IncomingStream, remote: string, local: string, method: S2SAuth): void;
  ended(stream: IncomingStream): void;
  logger: Logger;
}

type State = 'wait-header' | 'features' | 'tls' | 'sasl-restart' | 'open' | 'closed';

/**
 * A stream another server opened to us (RFC 6120 with jabber:server) over the same transport as
 * clients: STARTTLS (required by default, asking for the peer's certificate), then SASL EXTERNAL
 * when that certificate is trusted and names the peer's domain (RFC 6120 §13.7, XEP-0178), or
 * Server Dialback (XEP-0220), which a proving certificate also settles without a callback. It answers
 * db:verify for keys any node of ours generated (the secret is shared), checks db:result with the
 * originating server, and passes the stanzas of the domains it authorised to the router. A
 * stanza from a domain this stream has not authorised is `invalid-from`, as RFC 6120 §4.9.3.9
 * says; anything else malformed is the same stream error a client gets.
 */
export class IncomingStream implements TransportListener {
  private state: State = 'wait-header';
  readonly id = randomBytes(12).toString('hex');
  /** remote domain -> local domains it may send to (authorised by dialback). */
  private readonly authorisedPairs = new Map<string, Set<string>>();
  /** How each remote domain was authenticated. */
  private readonly methods = new Map<string, S2SAuth>();
  private local = '';
  /** The domain the peer's header names (`from`), and whether SASL has been done on this stream. */
  private peerDomain = '';
  private saslDone = false;
  private readonly log: Logger;
  private readonly authTimer: NodeJS.Timeout;

  constructor(private readonly transport: Transport, private readonly ctx: IncomingContext) {
    this.log = ctx.logger.child({ conn: transport.id });
    // A peer that proves no domain in time (an idle or half-open stream) goes: it holds a socket for nothing.
    this.authTimer = setTimeout(() => {
      if (this.authorisedPairs.size === 0) this.close(new StreamError('connection-timeout', `no domain authenticated within ${ctx.authTimeout} s`));
    }, ctx.authTimeout * 1000);
    this.authTimer.unref();
  }

  /** Remote domains this stream carries stanzas from. */
  get remotes(): string[] {
    return [...this.authorisedPairs.keys()];
  }

  methodOf(remote: string): S2SAuth {
    return this.methods.get(remote) ?? 'dialback';
  }

  get remoteAddress(): string {
    return this.transport.remoteAddress;
  }

  streamStart(attrs: Record<string, string>): void {
    try {
      if (this.state !== 'wait-header' && this.state !== 'tls' && this.state !== 'sasl-restart') throw new StreamError('invalid-xml', 'unexpected stream header');
      const restartedAfterSasl = this.state === 'sasl-restart';
      const to = (attrs.to ?? '').toLowerCase();
      if (attrs.version !== '1.0') throw new StreamError('unsupported-version', 'version 1.0 is required');
      this.transport.sendHeader({ 'xmlns:db': NS.DIALBACK, id: this.id, from: to || this.local, ...(attrs.from ? { to: attrs.from } : {}), version: '1.0' });
      if (to && !this.ctx.serves(to)) throw new StreamError('host-unknown', `this server does not serve ${to}`);
      this.local = to || this.local;
      this.peerDomain = (attrs.from ?? '').toLowerCase() || this.peerDomain;
      const features = new Element('stream:features');
      if (!this.transport.secure && this.transport.canStartTls) {
        const starttls = features.c('starttls', { xmlns: NS.TLS });
        if (this.ctx.tlsRequired) starttls.c('required');
      } else {
        // EXTERNAL only for a certificate that proves the domain the peer says it is (so it cannot fail for a reason the peer could have known).
        if (!this.saslDone && this.peerDomain && certificateProves(this.transport.peerCertificate?.(), this.peerDomain).valid) {
          features.c('mechanisms', { xmlns: NS.SASL }).c('mechanism').t('EXTERNAL');
        }
        // Dialback stays on offer after SASL: other domains of the peer's may piggyback on this stream (XEP-0220 §2.6).
        features.c('dialback', { xmlns: NS.DIALBACK_FEATURE }).c('errors');
      }
      this.transport.send(features);
      this.state = restartedAfterSasl ? 'open' : 'features';
    } catch (err) {
      this.fail(err);
    }
  }

  element(element: Element): void {
    try {
      this.handle(element);
    } catch (err) {
      this.fail(err);
    }
  }

  streamEnd(): void {
    this.close();
  }

  streamError(error: StreamError): void {
    this.close(error);
  }

  closed(reason: string): void {
    clearTimeout(this.authTimer);
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.log.debug('s2s incoming stream closed', { reason, remotes: this.remotes.join(',') || undefined });
    this.ctx.ended(this);
  }

  close(error?: StreamError): void {
    clearTimeout(this.authTimer);
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.transport.close(error);
    this.ctx.ended(this);
  }

  private handle(element: Element): void {
    if (this.state === 'closed') return;
    if (element.name === 'starttls' && element.attrs.xmlns === NS.TLS) {
      if (this.transport.secure || !this.transport.canStartTls) throw new StreamError('policy-violation', 'TLS is already negotiated');
      this.transport.send(new Element('proceed', { xmlns: NS.TLS }));
      this.state = 'tls';
      void this.transport.startTls().catch((err: Error) => {
        this.log.info('s2s TLS handshake failed', { remote: this.transport.remoteAddress, err: err.message });
        this.close();
      });
      return;
    }
    if (this.ctx.tlsRequired && !this.transport.secure) throw new StreamError('policy-violation', 'STARTTLS is required first');
    if (element.name === 'auth' && element.attrs.xmlns === NS.SASL) return this.saslExternal(element);
    const dialback = dialbackKind(element);
    if (dialback === 'verify') return this.answerVerify(element);
    if (dialback === 'result') return void this.checkResult(element);
    if (element.name === 'message' || element.name === 'presence' || element.name === 'iq') return this.stanza(element);
    throw new StreamError('unsupported-stanza-type', `<${element.name}/> is not expected here`);
  }

  /**
   * SASL EXTERNAL (RFC 6120 §6.4, XEP-0178): the authorisation identity is the peer's domain (or
   * empty: the one its header named); its certificate must prove it. Success restarts the stream.
   */
  private saslExternal(auth: Element): void {
    const failure = (condition: string, text: string) => {
      this.log.info('s2s SASL EXTERNAL refused', { remote: this.peerDomain, condition, text, address: this.transport.remoteAddress });
      const reply = new Element('failure', { xmlns: NS.SASL });
      reply.c(condition);
      reply.c('text').t(text);
      this.transport.send(reply);
    };
    if (this.saslDone) throw new StreamError('policy-violation', 'SASL is already done on this stream');
    if (auth.attrs.mechanism !== 'EXTERNAL') return failure('invalid-mechanism', 'only EXTERNAL is offered');
    if (!this.transport.secure) return failure('encryption-required', 'TLS first');
    const given = auth.getText().trim();
    let domain = this.peerDomain;
    if (given !== '' && given !== '=') {
      if (!/^[A-Za-z0-9+/]+={0,2}$/.test(given)) return failure('incorrect-encoding', 'the authorisation identity is not base64');
      domain = Buffer.from(given, 'base64').toString('utf8').toLowerCase();
    }
    if (!domain) return failure('invalid-authzid', 'no domain: the stream header has no from');
    if (this.peerDomain && domain !== this.peerDomain) return failure('invalid-authzid', `${domain} is not the domain the stream header names`);
    const proof = certificateProves(this.transport.peerCertificate?.(), domain);
    if (!proof.valid) return failure('not-authorized', proof.reason);
    this.transport.send(new Element('success', { xmlns: NS.SASL }));
    this.saslDone = true;
    this.peerDomain = domain;
    this.authorise(domain, this.local, 'sasl-external');
    this.state = 'sasl-restart';
    this.transport.restart();
  }

  private authorise(remote: string, local: string, method: S2SAuth): void {
    let locals = this.authorisedPairs.get(remote);
    if (!locals) this.authorisedPairs.set(remote, (locals = new Set()));
    locals.add(local);
    if (!this.methods.has(remote)) this.methods.set(remote, method);
    this.state = this.state === 'sasl-restart' ? this.state : 'open';
    this.log.info(`s2s incoming stream authenticated (${method})`, { remote, local, address: this.transport.remoteAddress });
    this.ctx.authorised(this, remote, local, method);
  }

  /** XEP-0220 §2.4: we are the authoritative server; any node of ours can check any of our keys. */
  private answerVerify(element: Element): void {
    const { from: receiving, to: originating, id } = element.attrs as Record<string, string | undefined>;
    if (!receiving || !originating || !id) throw new StreamError('invalid-xml', 'db:verify needs from, to and id');
    if (!this.ctx.serves(originating)) throw new StreamError('host-unknown', `this server does not serve ${originating}`);
    const valid = this.ctx.keys.verify(receiving, originating, id, element.getText());
    this.transport.send(dialbackElement('verify', { from: originating, to: receiving, id, type: valid ? 'valid' : 'invalid' }));
  }

  /** XEP-0220 §2.1-2.3: the originating server asks us to accept its stanzas; its authoritative server decides. */
  private async checkResult(element: Element): Promise<void> {
    const { from: remote, to: local } = element.attrs as Record<string, string | undefined>;
    if (!remote || !local) throw new StreamError('invalid-xml', 'db:result needs from and to');
    if (!this.ctx.serves(local)) {
      // XEP-0220 §2.4: a domain we do not serve is an error on the result, not on the stream.
      const error = dialbackElement('result', { from: local, to: remote, type: 'error' });
      error.c('error', { type: 'cancel' }).c('item-not-found', { xmlns: NS.STANZAS });
      this.transport.send(error);
      return;
    }
    const key = element.getText().trim();
    const proof = certificateProves(this.transport.peerCertificate?.(), remote);
    if (this.ctx.verifyCerts && !proof.valid) {
      this.transport.send(dialbackElement('result', { from: local, to: remote, type: 'invalid' }));
      this.log.warn('s2s dialback refused: the certificate does not prove the domain (--s2s-verify-certs)', { remote, local, reason: proof.reason, address: this.transport.remoteAddress });
      return this.close(new StreamError('not-authorized', `${remote}: ${proof.reason}`));
    }
    let valid = false;
    try {
      // A certificate that proves the domain settles it without asking its server back (XEP-0344 §2.3).
      valid = key !== '' && (proof.valid || (await this.ctx.verifyKey(local, remote, this.id, key)));
    } catch (err) {
      this.log.info('s2s dialback: the originating server could not be asked', { remote, err: String((err as Error)?.message ?? err) });
      if (this.state === 'closed') return;
      const error = dialbackElement('result', { from: local, to: remote, type: 'error' });
      error.c('error', { type: 'cancel' }).c('remote-server-not-found', { xmlns: NS.STANZAS });
      this.transport.send(error);
      return;
    }
    if (this.state === 'closed') return;
    this.transport.send(dialbackElement('result', { from: local, to: remote, type: valid ? 'valid' : 'invalid' }));
    if (!valid) {
      this.log.warn('s2s dialback key refused', { remote, local, address: this.transport.remoteAddress });
      return this.close(new StreamError('not-authorized', `${remote} did not confirm the key`));
    }
    this.authorise(remote, local, 'dialback');
  }

  private stanza(stanza: Element): void {
    const from = tryParseJID(stanza.attrs.from ?? '');
    const to = tryParseJID(stanza.attrs.to ?? '');
    // RFC 6120 §8.1.1.1, §8.1.2.1: on a server stream both addresses are required, and `from` must be of an authorised domain.
    if (!from) throw new StreamError('improper-addressing', 'a stanza between servers needs a valid from');
    if (!to) throw new StreamError('improper-addressing', 'a stanza between servers needs a valid to');
    const locals = this.authorisedPairs.get(from.domain);
    if (!locals) throw new StreamError('invalid-from', `${from.domain} is not authenticated on this stream`);
    if (!locals.has(to.domain)) {
      if (!this.ctx.serves(to.domain)) throw new StreamError('host-unknown', `this server does not serve ${to.domain}`);
      throw new StreamError('improper-addressing', `${from.domain} is not authenticated for ${to.domain} on this stream`);
    }
    delete stanza.attrs.xmlns;
    this.ctx.deliver(stanza, from, to);
  }

  private fail(err: unknown): void {
    if (err instanceof StreamError) {
      this.log.info('s2s stream error', { condition: err.condition, text: err.text, address: this.transport.remoteAddress });
      return this.close(err);
    }
    this.log.error('s2s incoming stream failed', { err: String((err as Error)?.stack ?? err) });
    this.close(new StreamError('internal-server-error'));
  }
}
