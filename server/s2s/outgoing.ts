import net from 'node:net';
import tls from 'node:tls';
import { Element } from 'ltx';
import { StreamError } from '../errors';
import type { Logger } from '../log';
import { peerCertificateOf, streamHeader, trustedCas } from '../transports/tcp';
import { NS } from '../xml/ns';
import { StreamParser, type ParserLimits } from '../xml/stream-parser';
import { serialize } from '../xml/serialize';
import { certificateProves, type DomainProof } from './certificates';
import { dialbackElement, dialbackKind, type DialbackKeys } from './dialback';

/** Where a remote domain's server listens: a host and port, direct TLS (XEP-0368) or STARTTLS. */
export interface PeerAddress {
  host: string;
  port: number;
  directTls: boolean;
}

export interface OutgoingOptions {
  /** Our domain (the originating server). */
  local: string;
  /** The remote domain (the receiving server). */
  remote: string;
  /** Where to connect, tried in order. */
  addresses: PeerAddress[];
  keys: DialbackKeys;
  /** Refuse a peer that does not offer STARTTLS. */
  tlsRequired: boolean;
  /** Refuse a peer whose certificate is not valid for its domain. */
  verifyCerts: boolean;
  /** Our certificate, presented to the peer (it may then offer SASL EXTERNAL), and CAs trusted beyond the system's. */
  certificate: { cert: string; key: string };
  ca?: readonly string[];
  limits: ParserLimits;
  logger: Logger;
  /** Milliseconds to get a connection authenticated (or a verification answered). */
  timeout: number;
}

/** Why an outgoing stream failed: the remote could not be found/reached, or it did not answer in time. */
export class OutgoingFailure extends Error {
  constructor(readonly condition: 'remote-server-not-found' | 'remote-server-timeout', message: string) {
    super(message);
  }
}

/** How a stream to a remote domain was authenticated: SASL EXTERNAL with our certificate, or dialback. */
export type S2SAuth = 'sasl-external' | 'dialback';

/**
 * One stream from this server to another (RFC 6120 with jabber:server): TCP (or direct TLS),
 * STARTTLS presenting our certificate, then SASL EXTERNAL when the peer offers it (it trusts our
 * certificate, RFC 6120 §6.4 and §13.7) or else Server Dialback (XEP-0220). Used two ways:
 * `authenticate()` makes it the route for our stanzas to the remote domain; `verify()` asks the
 * remote domain's server whether a key it generated is valid (the receiving server's side of
 * dialback), and closes.
 */
export class OutgoingStream {
  private socket?: net.Socket;
  private parser?: StreamParser;
  private streamId?: string;
  private closed = false;
  private authenticated = false;
  private onElement?: (element: Element) => void;
  private onFeatures?: (features: Element) => void;
  private failWith?: (err: Error) => void;
  /** Sockets whose close and errors already end this stream. */
  private readonly watched = new WeakSet<net.Socket>();
  /** What the peer's certificate proves of its domain, once TLS is up. */
  private peerProof: DomainProof = { valid: false, reason: 'no TLS' };
  /** How authenticate() got the stream accepted. */
  method?: S2SAuth;
  /** Called once when an authenticated stream ends (by either side). */
  onClose?: (reason: string) => void;

  constructor(private readonly opts: OutgoingOptions) {}

  /** Connects and authenticates (SASL EXTERNAL if offered, else dialback); resolves when stanzas may be sent. */
  async authenticate(): Promise<void> {
    await this.within(async () => {
      const features = await this.open();
      if (offersExternal(features) && (await this.saslExternal())) {
        this.method = 'sasl-external';
        return;
      }
      const key = this.opts.keys.generate(this.opts.remote, this.opts.local, this.streamId!);
      const answer = this.next((e) => dialbackKind(e) === 'result');
      this.write(dialbackElement('result', { from: this.opts.local, to: this.opts.remote }, key));
      const result = await answer;
      if (result.attrs.type !== 'valid') throw new OutgoingFailure('remote-server-not-found', `${this.opts.remote} refused our dialback key (${result.attrs.type ?? 'no type'})`);
      this.method = 'dialback';
    });
    this.authenticated = true;
    this.opts.logger.info('s2s outgoing stream authenticated', { remote: this.opts.remote, local: this.opts.local, method: this.method, peerCertificate: this.peerProof.valid ? 'valid' : this.peerProof.reason });
  }

  /**
   * RFC 6120 §6.4 with EXTERNAL (XEP-0178): the authorisation identity is our domain. On success the
   * stream restarts and is ours to send on; on failure dialback may still prove the domain.
   */
  private async saslExternal(): Promise<boolean> {
    const answer = this.next((e) => (e.name === 'success' || e.name === 'failure') && e.attrs.xmlns === NS.SASL);
    this.write(new Element('auth', { xmlns: NS.SASL, mechanism: 'EXTERNAL' }).t(Buffer.from(this.opts.local).toString('base64')));
    const outcome = await answer;
    if (outcome.name !== 'success') {
      this.opts.logger.info('s2s: SASL EXTERNAL refused; trying dialback', { remote: this.opts.remote, condition: outcome.getChildElements()[0]?.name });
      return false;
    }
    await this.restart();
    return true;
  }

  /** Asks the remote (authoritative) server whether `key` is the one it generated for stream `id`. */
  async verify(id: string, key: string): Promise<boolean> {
    try {
      return await this.within(async () => {
        await this.open();
        const answer = this.next((e) => dialbackKind(e) === 'verify' && e.attrs.id === id);
        this.write(dialbackElement('verify', { from: this.opts.local, to: this.opts.remote, id }, key));
        return (await answer).attrs.type === 'valid';
      });
    } finally {
      this.close();
    }
  }

  send(stanza: Element): void {
    this.write(stanza);
  }

  /** Authenticated and open: stanzas may be written. */
  get ready(): boolean {
    return this.authenticated && !this.closed && this.socket !== undefined && !this.socket.destroyed;
  }

  close(error?: StreamError): void {
    if (this.closed) return;
    this.closed = true;
    const socket = this.socket;
    if (socket && !socket.destroyed) {
      socket.end(`${error ? error.toElement().toString() : ''}</stream:stream>`);
      setTimeout(() => socket.destroy(), 5000).unref();
    }
    this.onClose?.('closed by us');
  }

  // ---- the stream ----

  /** TCP (or TLS), the header, STARTTLS when offered (required unless allowed otherwise), the header again; the peer's features. */
  private async open(): Promise<Element> {
    this.socket = await this.connect();
    let features = await this.restart();
    if (this.socket instanceof tls.TLSSocket) this.checkPeer(this.socket);
    else {
      if (features.getChild('starttls', NS.TLS)) {
        const proceed = this.next((e) => e.name === 'proceed' || e.name === 'failure');
        this.write(new Element('starttls', { xmlns: NS.TLS }));
        if ((await proceed).name !== 'proceed') throw new OutgoingFailure('remote-server-not-found', `${this.opts.remote} refused STARTTLS`);
        this.socket = await this.upgrade(this.socket);
        this.checkPeer(this.socket as tls.TLSSocket);
        features = await this.restart();
      } else if (this.opts.tlsRequired) {
        throw new OutgoingFailure('remote-server-not-found', `${this.opts.remote} does not offer STARTTLS (--s2s-tls-required)`);
      }
    }
    return features;
  }

  /** What the peer's certificate proves; with --s2s-verify-certs, a peer it does not prove is refused. */
  private checkPeer(socket: tls.TLSSocket): void {
    this.peerProof = certificateProves(peerCertificateOf(socket), this.opts.remote);
    if (!this.peerProof.valid && this.opts.verifyCerts) {
      throw new OutgoingFailure('remote-server-not-found', `${this.opts.remote}: ${this.peerProof.reason} (--s2s-verify-certs)`);
    }
  }

  /** TLS options of ours: the servername to check, our certificate for the peer to check, and the CAs we trust. */
  private tlsOptions(): tls.ConnectionOptions {
    return {
      servername: net.isIP(this.opts.remote) ? undefined : this.opts.remote,
      cert: this.opts.certificate.cert,
      key: this.opts.certificate.key,
      ...(this.opts.ca ? { ca: trustedCas(this.opts.ca) } : {}),
      // The names are checked by checkPeer (RFC 6125 for the remote domain, not for the host connected to).
      rejectUnauthorized: false,
    };
  }

  private async connect(): Promise<net.Socket> {
    const errors: string[] = [];
    for (const address of this.opts.addresses) {
      try {
        const socket = await new Promise<net.Socket>((resolve, reject) => {
          const s = address.directTls
            ? tls.connect({ host: address.host, port: address.port, ALPNProtocols: ['xmpp-server'], ...this.tlsOptions() })
            : net.connect({ host: address.host, port: address.port });
          s.once(address.directTls ? 'secureConnect' : 'connect', () => resolve(s));
          s.once('error', reject);
        });
        socket.setNoDelay(true);
        return socket;
      } catch (err) {
        errors.push(`${address.host}:${address.port}: ${(err as Error).message}`);
      }
    }
    throw new OutgoingFailure('remote-server-not-found', `cannot reach ${this.opts.remote} (${errors.join('; ') || 'no address'})`);
  }

  private upgrade(plain: net.Socket): Promise<tls.TLSSocket> {
    plain.removeAllListeners('data');
    return new Promise((resolve, reject) => {
      const secure = tls.connect({ socket: plain, ...this.tlsOptions() });
      secure.once('secureConnect', () => resolve(secure));
      secure.once('error', reject);
    });
  }

  /** Sends our header on the current socket and resolves with the peer's features. */
  private restart(): Promise<Element> {
    const socket = this.socket!;
    socket.removeAllListeners('data');
    const features = new Promise<Element>((resolve) => (this.onFeatures = resolve));
    this.parser = new StreamParser(this.opts.limits, {
      streamStart: (_name, attrs) => {
        this.streamId = attrs.id;
        if (!attrs.id) throw new StreamError('invalid-xml', 'the stream header has no id');
      },
      element: (element) => {
        if (element.name === 'stream:features') return this.onFeatures?.(element);
        if (element.name === 'stream:error') {
          const condition = element.getChildElements()[0]?.name ?? 'undefined-condition';
          return this.fail(new OutgoingFailure('remote-server-not-found', `${this.opts.remote} closed the stream: ${condition}`));
        }
        this.onElement?.(element);
      },
      streamEnd: () => this.fail(new OutgoingFailure('remote-server-not-found', `${this.opts.remote} closed the stream`)),
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        this.parser!.write(chunk);
      } catch (err) {
        this.fail(err as Error);
      }
    });
    // Once per socket: a restart after SASL keeps the socket (and its listeners).
    if (!this.watched.has(socket)) {
      this.watched.add(socket);
      socket.once('close', () => this.fail(new OutgoingFailure('remote-server-not-found', `the connection to ${this.opts.remote} closed`)));
      socket.on('error', (err) => this.fail(new OutgoingFailure('remote-server-not-found', `${this.opts.remote}: ${err.message}`)));
    }
    socket.write(streamHeader({ 'xmlns:db': NS.DIALBACK, from: this.opts.local, to: this.opts.remote, version: '1.0' }, NS.SERVER));
    return features;
  }

  /** The next element from the peer that `match`es. */
  private next(match: (element: Element) => boolean): Promise<Element> {
    return new Promise((resolve) => {
      this.onElement = (element) => {
        if (match(element)) resolve(element);
        else this.opts.logger.debug('s2s: unexpected element on an outgoing stream', { remote: this.opts.remote, element: element.name });
      };
    });
  }

  private write(element: Element): void {
    if (this.socket && !this.socket.destroyed) this.socket.write(serialize(element));
  }

  /** Runs the negotiation under the timeout; any failure closes the socket. */
  private async within<T>(work: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const failed = new Promise<never>((_, reject) => {
      this.failWith = reject;
      timer = setTimeout(() => reject(new OutgoingFailure('remote-server-timeout', `${this.opts.remote} did not answer in ${this.opts.timeout / 1000} s`)), this.opts.timeout);
    });
    try {
      return await Promise.race([work(), failed]);
    } catch (err) {
      this.socket?.destroy();
      this.closed = true;
      throw err;
    } finally {
      clearTimeout(timer);
      // After the negotiation, a failure is the end of an established stream.
      this.failWith = undefined;
    }
  }

  private fail(err: Error): void {
    if (this.failWith) return this.failWith(err);
    if (this.closed) return;
    this.closed = true;
    this.socket?.destroy();
    this.onClose?.(err.message);
  }
}

/** Whether stream features offer SASL EXTERNAL (the peer trusts the certificate we presented). */
function offersExternal(features: Element): boolean {
  const mechanisms = features.getChild('mechanisms', NS.SASL);
  return mechanisms?.getChildren('mechanism').some((m) => m.getText().trim() === 'EXTERNAL') ?? false;
}
