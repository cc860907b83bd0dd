import net from 'node:net';
import tls from 'node:tls';
import type { Element } from 'ltx';
import NetKeepAlive from 'net-keepalive';
import { availableChannelBindings, channelBindingFor } from '../c2s/sasl/channel-binding';
import type { PeerCertificate, Transport, TransportListener } from '../c2s/transport';
import { StreamError } from '../errors';
import type { Logger } from '../log';
import { escapeXML } from 'ltx';
import { NS } from '../xml/ns';
import { StreamParser, type ParserLimits } from '../xml/stream-parser';
import { hostOf, normaliseAddress } from '../net-address';
import type { AddressLimits } from './address-limits';
import { readProxyHeader } from './proxy-protocol';
import { ReadGate } from './read-rate';
import { SendLimit } from './send-limit';
import { serialize } from '../xml/serialize';
import type { TlsCredentials } from '../tls';

/** Seconds of silence before the server writes a whitespace keepalive (RFC 6120 §4.6.1) [60]. */
const WHITESPACE_KEEPALIVE_SECONDS = 60;
/** TCP keepalive: first probe after 60 s idle, then every 10 s, 3 probes: a dead peer is gone in ~90 s. */
const TCP_KEEPALIVE = { idleMs: 60_000, intervalMs: 10_000, probes: 3 };
/** How long a balancer's connection may take to send its PROXY protocol header [10000 ms]. */
const PROXY_HEADER_TIMEOUT_MS = 10_000;
/** Seconds we wait for the client's closing tag after ours before dropping the socket [5]. */
const CLOSE_GRACE_SECONDS = 5;

export interface TcpConnectionOptions {
  id: string;
  socket: net.Socket;
  /** The client's "address:port" when a balancer told it (PROXY protocol); else the socket's. */
  remoteAddress?: string;
  /** Bytes a second the client may send (--client-rate-limit), read at each chunk. */
  bytesPerSecond?: () => number;
  /** Bytes sent to the client that may wait unread before the stream is closed (--client-send-queue), read at each check. */
  sendQueueBytes?: () => number;
  limits: ParserLimits;
  /** Certificate for STARTTLS (the current one: SIGHUP may replace it); absent disables STARTTLS. */
  secureContext?: () => tls.SecureContext;
  /** The first served domain, used when an error must be sent before any header. */
  defaultDomain: string;
  logger: Logger;
  /** The stream's content namespace: jabber:client [default] or jabber:server (server-to-server). */
  contentNamespace?: string;
  /** Ask the peer for its certificate in the TLS handshake, without refusing one that is missing or untrusted (s2s). */
  requestCert?: boolean;
}

/**
 * One client over TCP (RFC 6120): plain with STARTTLS on 5222, or TLS from the first byte
 * (XEP-0368) on 5223. It turns bytes into elements and elements into bytes; the stream state
 * machine (C2SStream) decides everything else.
 */
export class TcpTransport implements Transport {
  /** Set by the listener: the per-address limits stop counting this client as waiting to log in. */
  authenticated?: () => void;
  readonly kind = 'tcp' as const;
  readonly remoteAddress: string;
  private socket: net.Socket;
  private parser!: StreamParser;
  private listener?: TransportListener;
  private headerSent = false;
  private closing = false;
  private closedReason?: string;
  private corked = false;
  /** Writes not yet handed to the kernel, and who waits for them (see whenWritten). */
  private unwritten = 0;
  private writtenWaiters: (() => void)[] = [];
  private lastWrite = Date.now();
  private readonly keepalive: NodeJS.Timeout;
  private readonly onData = (chunk: Buffer) => this.feed(chunk);
  /** Reads unless over --client-rate-limit or held by the node (pauseReading). */
  private readonly gate: ReadGate;
  /** Closes the stream when the client leaves more than --client-send-queue unread. */
  private readonly sendLimit?: SendLimit;
  private bindingTypes?: string[];

  constructor(private readonly opts: TcpConnectionOptions) {
    this.socket = opts.socket;
    this.remoteAddress = opts.remoteAddress ?? `${opts.socket.remoteAddress}:${opts.socket.remotePort}`;
    this.gate = new ReadGate(() => this.socket, opts.bytesPerSecond);
    if (opts.sendQueueBytes) {
      this.sendLimit = new SendLimit(() => this.socket.writableLength, opts.sendQueueBytes, (error) => {
        if (!this.closing) this.listener?.streamError(error);
      });
    }
    this.configureSocket(this.socket);
    this.keepalive = setInterval(() => {
      if (Date.now() - this.lastWrite >= WHITESPACE_KEEPALIVE_SECONDS * 1000 && !this.closing) this.write(' ');
    }, WHITESPACE_KEEPALIVE_SECONDS * 1000).unref();
  }

  get id(): string {
    return this.opts.id;
  }

  get secure(): boolean {
    return this.socket instanceof tls.TLSSocket;
  }

  get canStartTls(): boolean {
    return !this.secure && this.opts.secureContext !== undefined;
  }

  /** Starts reading; the listener gets every event from here on. */
  attach(listener: TransportListener): void {
    this.listener = listener;
    this.parser = this.newParser();
    this.socket.on('data', this.onData);
    // A socket whose PROXY header was read was paused, with what followed the header put back.
    this.gate.apply();
  }

  sendHeader(attrs: Record<string, string>): void {
    this.headerSent = true;
    this.write(streamHeader(attrs, this.opts.contentNamespace));
  }

  send(element: Element): void {
    this.write(serialize(element));
  }

  flush(): void {
    if (!this.corked) return;
    this.corked = false;
    this.socket.uncork();
  }

  whenWritten(): Promise<void> | undefined {
    if (this.unwritten === 0 || this.socket.destroyed) return undefined;
    return new Promise<void>((resolve) => this.writtenWaiters.push(resolve));
  }

  /** The callback of every socket write: the data has gone to the kernel (or the socket is gone). */
  private readonly written = (): void => {
    if (--this.unwritten > 0) return;
    const waiters = this.writtenWaiters;
    this.writtenWaiters = [];
    for (const resolve of waiters) resolve();
  };

  close(error?: StreamError): void {
    if (this.closing) return;
    this.closing = true;
    let out = '';
    // RFC 6120 §4.9.1.2: an error before our header still needs a header first.
    if (!this.headerSent) this.sendHeader({ from: this.opts.defaultDomain, version: '1.0' });
    if (error) out += error.toElement().toString();
    this.write(out + '</stream:stream>');
    this.socket.end();
    setTimeout(() => this.socket.destroy(), CLOSE_GRACE_SECONDS * 1000).unref();
  }

  async startTls(): Promise<void> {
    const context = this.opts.secureContext?.();
    if (!context) throw new Error('STARTTLS without a certificate');
    const plain = this.socket;
    plain.off('data', this.onData);
    const secure = new tls.TLSSocket(plain, { isServer: true, secureContext: context, ...(this.opts.requestCert ? { requestCert: true, rejectUnauthorized: false } : {}) });
    this.socket = secure;
    this.configureSocket(secure);
    await new Promise<void>((resolve, reject) => {
      secure.once('secure', resolve);
      secure.once('error', reject);
      secure.once('close', () => reject(new Error('closed during TLS handshake')));
    });
    if (this.opts.requestCert) settleVerification(secure);
    this.parser = this.newParser();
    secure.on('data', this.onData);
    // A throttle or hold that began on the plain socket goes on, and ends, on this one.
    this.gate.apply();
  }

  restart(): void {
    this.parser = this.newParser();
  }

  pauseReading(held: boolean): void {
    this.gate.hold(held);
  }

  channelBinding(type: string): Buffer | undefined {
    return this.socket instanceof tls.TLSSocket ? channelBindingFor(this.socket, type) : undefined;
  }

  channelBindingTypes(): string[] {
    if (!(this.socket instanceof tls.TLSSocket)) return [];
    // Asked for the features and again for the exchange: one answer per TLS session.
    this.bindingTypes ??= availableChannelBindings(this.socket);
    return this.bindingTypes;
  }

  peerCertificate(): PeerCertificate | undefined {
    return this.socket instanceof tls.TLSSocket ? peerCertificateOf(this.socket) : undefined;
  }

  private feed(chunk: Buffer): void {
    if (this.closing) return;
    // Over its byte rate: read nothing more until the budget is back (TCP slows the client).
    this.gate.received(chunk.length);
    try {
      this.parser.write(chunk);
    } catch (err) {
      if (err instanceof StreamError) this.listener?.streamError(err);
      else this.listener?.streamError(new StreamError('internal-server-error'));
    }
  }

  private newParser(): StreamParser {
    const listener = this.listener!;
    return new StreamParser(this.opts.limits, {
      streamStart: (name, attrs) => {
        if (name !== 'stream:stream') {
          throw new StreamError(name.endsWith(':stream') ? 'bad-namespace-prefix' : 'invalid-namespace', 'expected <stream:stream>');
        }
        if (attrs['xmlns:stream'] !== NS.STREAM) throw new StreamError('invalid-namespace', 'wrong stream namespace');
        const content = this.opts.contentNamespace ?? NS.CLIENT;
        if (attrs.xmlns !== content) throw new StreamError('invalid-namespace', `content namespace must be ${content}`);
        listener.streamStart(attrs);
      },
      element: (element) => listener.element(element),
      streamEnd: () => listener.streamEnd(),
    });
  }

  private write(data: string): void {
    const socket = this.socket;
    if (socket.destroyed || !socket.writable) return;
    this.lastWrite = Date.now();
    // Writes within one tick leave in one packet.
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      process.nextTick(() => {
        this.corked = false;
        socket.uncork();
      });
    }
    this.unwritten++;
    socket.write(data, this.written);
    if (!this.closing) this.sendLimit?.wrote();
  }

  private configureSocket(socket: net.Socket): void {
    socket.on('error', (err) => {
      this.opts.logger.debug('socket error', { err: err.message });
    });
    socket.once('close', () => this.onClose(socket));
  }

  private onClose(socket: net.Socket): void {
    // The plain socket under a TLS socket closes with it; report once, for the current socket.
    if (socket !== this.socket || this.closedReason) return;
    this.closedReason = this.closing ? 'closed' : 'peer went away';
    clearInterval(this.keepalive);
    this.listener?.closed(this.closedReason);
  }

  /** TCP keepalive with short probes so a vanished peer is noticed (net-keepalive sets what Node cannot). */
  static tuneKeepalive(socket: net.Socket): void {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, TCP_KEEPALIVE.idleMs);
    try {
      NetKeepAlive.setKeepAliveInterval(socket, TCP_KEEPALIVE.intervalMs);
      NetKeepAlive.setKeepAliveProbes(socket, TCP_KEEPALIVE.probes);
    } catch {
      // Not supported on this platform: the kernel defaults apply.
    }
  }
}

export interface TcpListenerOptions {
  port: number;
  host: string;
  /** Direct TLS (XEP-0368) rather than STARTTLS. */
  directTls: boolean;
  /** The current certificate (SIGHUP may replace it: reloadCertificate). */
  secureContext: () => tls.SecureContext;
  /** PEM certificate and key (and session ticket keys), for the direct-TLS listener. */
  certificate: TlsCredentials;
  limits: ParserLimits;
  defaultDomain: string;
  logger: Logger;
  nextId: () => string;
  onConnection: (transport: TcpTransport) => void;
  /** Connections from --trusted-proxies start with a PROXY protocol header naming the client (--c2s-proxy-protocol). */
  proxyProtocol?: boolean;
  trustedProxies?: readonly string[];
  /** Per-address connection limits (--max-connections-per-ip, --connection-rate-per-ip). */
  addressLimits?: AddressLimits;
  /** Bytes a second each client may send (--client-rate-limit). */
  bytesPerSecond?: () => number;
  /** Bytes sent to a client that may wait unread before its stream is closed (--client-send-queue). */
  sendQueueBytes?: () => number;
  /** jabber:server for the server-to-server listeners [jabber:client]. */
  contentNamespace?: string;
  /** ALPN protocol of the direct-TLS listener [xmpp-client] (XEP-0368: xmpp-server for s2s). */
  alpn?: string;
  /** Ask peers for their certificates (s2s: SASL EXTERNAL); `ca` adds trusted CAs to the system's. */
  requestCert?: boolean;
  ca?: readonly string[];
}

/** Gives a listener from listenTcp a new certificate (or ticket keys): new connections use it, open ones keep theirs. */
export function reloadCertificate(server: net.Server, certificate: TlsCredentials): void {
  if (server instanceof tls.Server) server.setSecureContext({ ...certificate, minVersion: 'TLSv1.2' });
}

/** Listens for clients on one port; resolves with the server once it listens. */
export async function listenTcp(opts: TcpListenerOptions): Promise<net.Server> {
  const proxied = (socket: net.Socket) => opts.proxyProtocol === true && (opts.trustedProxies ?? []).includes(normaliseAddress(socket.remoteAddress ?? ''));
  const start = (socket: net.Socket, remoteAddress?: string) => {
    const address = remoteAddress ?? `${socket.remoteAddress}:${socket.remotePort}`;
    const admitted = opts.addressLimits?.admit(hostOf(address));
    if (admitted && 'refused' in admitted) {
      opts.logger.debug('connection refused', { remote: address, reason: admitted.refused });
      refuse(socket, opts.defaultDomain, admitted.refused, opts.contentNamespace);
      return;
    }
    if (admitted) socket.once('close', admitted.release);
    const id = opts.nextId();
    const transport = new TcpTransport({
      id,
      socket,
      remoteAddress,
      bytesPerSecond: opts.bytesPerSecond,
      sendQueueBytes: opts.sendQueueBytes,
      limits: opts.limits,
      secureContext: opts.directTls ? undefined : opts.secureContext,
      defaultDomain: opts.defaultDomain,
      logger: opts.logger.child({ conn: id }),
      contentNamespace: opts.contentNamespace,
      requestCert: opts.requestCert,
    });
    if (admitted) transport.authenticated = admitted.authenticated;
    opts.onConnection(transport);
  };
  // Behind a balancer speaking the PROXY protocol the header comes first, before TLS on a direct-TLS port.
  const accept = (socket: net.Socket) => {
    TcpTransport.tuneKeepalive(socket);
    if (!proxied(socket)) {
      if (opts.directTls && !(socket instanceof tls.TLSSocket)) return wrapTls(socket);
      return start(socket);
    }
    readProxyHeader(socket, PROXY_HEADER_TIMEOUT_MS).then(
      (peer) => (opts.directTls ? wrapTls(socket, peer.remoteAddress) : start(socket, peer.remoteAddress)),
      (err: Error) => {
        opts.logger.info('PROXY protocol header missing or malformed: connection closed', { remote: `${socket.remoteAddress}:${socket.remotePort}`, err: err.message });
        socket.destroy();
      },
    );
  };
  const askForCertificate = opts.requestCert ? { requestCert: true, rejectUnauthorized: false } : {};
  const wrapTls = (socket: net.Socket, remoteAddress?: string) => {
    const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: opts.secureContext(), ALPNProtocols: [opts.alpn ?? 'xmpp-client'], ...askForCertificate });
    secure.once('secure', () => {
      if (opts.requestCert) settleVerification(secure);
      start(secure, remoteAddress);
    });
    secure.on('error', (err) => opts.logger.debug('TLS handshake failed', { err: err.message }));
  };
  const server = opts.directTls && !opts.proxyProtocol
    ? tls.createServer({ ...opts.certificate, ALPNProtocols: [opts.alpn ?? 'xmpp-client'], minVersion: 'TLSv1.2', ...askForCertificate, ...(opts.ca ? { ca: trustedCas(opts.ca) } : {}) }, accept)
    : net.createServer(accept);
  server.on('tlsClientError', (err: Error) => opts.logger.debug('TLS handshake failed', { err: err.message }));
  server.on('error', (err) => opts.logger.error('listener error', { err: err.message, port: opts.port }));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

/** The system's trusted CAs plus `extra` (PEM), as a TLS `ca` option (which otherwise replaces the system's). */
export function trustedCas(extra: readonly string[]): string[] {
  return [...tls.rootCertificates, ...extra];
}

/**
 * A server-side TLSSocket made from a plain socket (STARTTLS, or TLS after a PROXY header) does not
 * set `authorized` the way a tls.Server's sockets do: this does what tls.Server does on 'secure'
 * (read the handshake's verification result), so a peer's certificate is judged the same either way.
 */
function settleVerification(socket: tls.TLSSocket): void {
  const handle = (socket as unknown as { _handle?: { verifyError?: () => (Error & { code?: string }) | null } })._handle;
  if (typeof handle?.verifyError !== 'function') return;
  const error = handle.verifyError();
  socket.authorized = error === null || error === undefined;
  if (error) (socket as { authorizationError: Error | string }).authorizationError = error.code ?? error.message;
}

/** The certificate a TLS peer presented, if any, and whether its chain is trusted. */
export function peerCertificateOf(socket: tls.TLSSocket): PeerCertificate | undefined {
  const certificate = socket.getPeerCertificate();
  if (!certificate || Object.keys(certificate).length === 0) return undefined;
  const error = socket.authorizationError as unknown as Error | string | null;
  return { trusted: socket.authorized, reason: error ? String((error as Error).message ?? error) : undefined, certificate };
}

/** Closes a connection the address limits refused: a stream header and <policy-violation/> (RFC 6120 §4.9.3.14). */
/** The opening <stream:stream> of a client (or server-to-server) stream, with `attrs` (escaped). */
export function streamHeader(attrs: Record<string, string>, contentNamespace: string = NS.CLIENT): string {
  let header = `<?xml version='1.0'?><stream:stream xmlns='${contentNamespace}' xmlns:stream='${NS.STREAM}'`;
  for (const [name, value] of Object.entries(attrs)) header += ` ${name}='${escapeXML(value)}'`;
  return `${header}>`;
}

function refuse(socket: net.Socket, domain: string, reason: string, namespace?: string): void {
  const error = new StreamError('policy-violation', reason).toElement().toString();
  socket.on('error', () => undefined);
  socket.end(`${streamHeader({ from: domain, version: '1.0' }, namespace)}${error}</stream:stream>`);
  setTimeout(() => socket.destroy(), CLOSE_GRACE_SECONDS * 1000).unref();
}

