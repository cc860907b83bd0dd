import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { Element, escapeXML } from 'ltx';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { availableChannelBindings, channelBindingFor } from '../c2s/sasl/channel-binding';
import type { Transport, TransportListener } from '../c2s/transport';
import { StreamError } from '../errors';
import { ReadGate } from './read-rate';
import { SendLimit } from './send-limit';
import type { AddressLimits } from './address-limits';
import { hostOf } from '../net-address';
import type { HttpHandler } from '../http/http-listener';
import type { RequestInfo } from '../http/request-info';
import type { Logger } from '../log';
import { FragmentParser } from '../xml/fragment-parser';
import { NS } from '../xml/ns';
import { standaloneXml } from '../xml/standalone';
import type { ParserLimits } from '../xml/stream-parser';

/** Paths the WebSocket endpoint answers on: the common `/xmpp-websocket`, and `/`. */
export const WEBSOCKET_PATHS: readonly string[] = ['/xmpp-websocket', '/'];
/** Seconds between WebSocket pings; a client that has not answered the previous one is dropped [30]. */
const PING_INTERVAL_SECONDS = 30;
/** Seconds we wait for the client's <close/> after ours before closing the WebSocket [5]. */
const CLOSE_GRACE_SECONDS = 5;
/** RFC 6455 §7.4.1 status codes. */
const NORMAL_CLOSURE = 1000;
const UNSUPPORTED_DATA = 1003;

export interface WebSocketEndpointOptions {
  /** Stanza size, depth and attribute limits; maxStanzaSize is also the largest WebSocket message. */
  limits: ParserLimits;
  /** The first served domain, used when an error must be sent before any <open/>. */
  defaultDomain: string;
  logger: Logger;
  /** Builds the stream state machine for a new connection (main attaches a C2SStream). */
  onTransport: (transport: WebSocketTransport) => TransportListener;
  /** Bytes a second each client may send (--client-rate-limit), read at each message. */
  bytesPerSecond?: () => number;
  /** Bytes sent to a client that may wait unread before its stream is closed (--client-send-queue). */
  sendQueueBytes?: () => number;
  /** Per-address connection limits (--max-connections-per-ip, --connection-rate-per-ip), by the client's address. */
  addressLimits?: AddressLimits;
}

/**
 * RFC 7395 XMPP over WebSocket, served on the ports' HTTP listener: checks the handshake (the
 * `xmpp` subprotocol is required), keeps connections alive with WebSocket pings, and turns each
 * connection into a WebSocketTransport for the one stream state machine.
 */
export class WebSocketEndpoint implements HttpHandler {
  private readonly wss: WebSocketServer;
  private readonly transports = new Set<WebSocketTransport>();
  private readonly keepalive: NodeJS.Timeout;
  private nextId = 0;

  constructor(private readonly opts: WebSocketEndpointOptions) {
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      // A message is one stanza (RFC 7395 §3.3.3): larger frames are refused by ws with 1009.
      maxPayload: opts.limits.maxStanzaSize,
      handleProtocols: (protocols) => (protocols.has('xmpp') ? 'xmpp' : false),
    });
    this.wss.on('error', (err) => opts.logger.debug('WebSocket server error', { err: err.message }));
    this.keepalive = setInterval(() => {
      for (const transport of this.transports) transport.ping();
    }, PING_INTERVAL_SECONDS * 1000).unref();
  }

  /** Open WebSocket connections. */
  get count(): number {
    return this.transports.size;
  }

  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, info: RequestInfo): boolean {
    const path = (req.url ?? '/').split('?')[0];
    if (!WEBSOCKET_PATHS.includes(path) || (req.headers.upgrade ?? '').toLowerCase() !== 'websocket') return false;
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    if (!offered.includes('xmpp')) {
      // RFC 7395 §3.1: the client MUST offer the 'xmpp' subprotocol; without it this is not an XMPP connection.
      this.opts.logger.info('WebSocket handshake refused: no xmpp subprotocol', { remote: info.remoteAddress, offered: offered.join(',') });
      const text = 'XMPP over WebSocket requires the "xmpp" subprotocol (RFC 7395)\n';
      socket.end(`HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
      return true;
    }
    const admitted = this.opts.addressLimits?.admit(hostOf(info.remoteAddress));
    if (admitted && 'refused' in admitted) {
      // Before the upgrade: an HTTP answer costs less than a WebSocket and a stream.
      this.opts.logger.debug('WebSocket refused', { remote: info.remoteAddress, reason: admitted.refused });
      const text = `${admitted.refused}\n`;
      socket.end(`HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nRetry-After: 5\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
      return true;
    }
    if (admitted) socket.once('close', admitted.release);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const id = `ws-${++this.nextId}`;
      const transport = new WebSocketTransport(id, ws, info, this.opts.limits, this.opts.defaultDomain, this.opts.logger.child({ conn: id }), this.opts.bytesPerSecond, this.opts.sendQueueBytes);
      if (admitted) transport.authenticated = admitted.authenticated;
      this.transports.add(transport);
      transport.attach(this.opts.onTransport(transport), () => this.transports.delete(transport));
    });
    return true;
  }

  /** Closes every connection (with a stream error, e.g. system-shutdown) and stops the pings. */
  close(error?: StreamError): void {
    clearInterval(this.keepalive);
    for (const transport of this.transports) transport.close(error);
  }
}

/**
 * One client over WebSocket (RFC 7395): each message is one element; the stream header is
 * <open/> and its end <close/> in the framing namespace. No STARTTLS: the connection is secure
 * when it is wss (or a trusted TLS-terminating proxy says so), RFC 7395 §3.9.
 */
export class WebSocketTransport implements Transport {
  /** Set by the listener: the per-address limits stop counting this client as waiting to log in. */
  authenticated?: () => void;
  readonly kind = 'websocket' as const;
  readonly canStartTls = false;
  private listener?: TransportListener;
  private readonly parser: FragmentParser;
  private headerSent = false;
  private closing = false;
  private clientClosed = false;
  private alive = true;
  private closeTimer?: NodeJS.Timeout;
  /** Reads unless over --client-rate-limit or held by the node (pauseReading). */
  private readonly gate: ReadGate;
  /** Closes the stream when the client leaves more than --client-send-queue unread. */
  private readonly sendLimit?: SendLimit;

  constructor(
    readonly id: string,
    private readonly ws: WebSocket,
    private readonly info: RequestInfo,
    limits: ParserLimits,
    private readonly defaultDomain: string,
    private readonly log: Logger,
    bytesPerSecond?: () => number,
    sendQueueBytes?: () => number,
  ) {
    this.parser = new FragmentParser(limits, { rootDepth: 2 });
    this.gate = new ReadGate(() => ws, bytesPerSecond);
    if (sendQueueBytes) {
      this.sendLimit = new SendLimit(() => ws.bufferedAmount, sendQueueBytes, (error) => {
        if (!this.closing) this.listener?.streamError(error);
      });
    }
    // ws reports protocol errors (a frame over maxPayload: 1009) here; without a listener they would crash the process.
    ws.on('error', (err) => this.log.info('WebSocket error', { err: err.message }));
  }

  get remoteAddress(): string {
    return this.info.remoteAddress;
  }

  get secure(): boolean {
    return this.info.secure;
  }

  attach(listener: TransportListener, onClosed: () => void): void {
    this.listener = listener;
    this.ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    this.ws.on('pong', () => { this.alive = true; });
    this.ws.once('close', (code, reason) => {
      clearTimeout(this.closeTimer);
      onClosed();
      listener.closed(this.closing ? 'closed' : `WebSocket closed (${code}${reason.length ? ` ${reason}` : ''})`);
    });
  }

  sendHeader(attrs: Record<string, string>): void {
    // RFC 7395 §3.4: <open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from= id= version= xml:lang=/>
    let open = `<open xmlns='${NS.FRAMING}'`;
    for (const [name, value] of Object.entries(attrs)) open += ` ${name}='${escapeXML(value)}'`;
    this.headerSent = true;
    this.write(open + '/>');
  }

  send(element: Element): void {
    this.write(standaloneXml(element));
  }

  /** RFC 7395 §3.6: the stream error if any, then <close/>; the WebSocket closes once the client answers with its <close/>. */
  close(error?: StreamError): void {
    if (this.closing) return;
    this.closing = true;
    if (!this.headerSent) this.sendHeader({ from: this.defaultDomain, version: '1.0' });
    if (error) this.write(standaloneXml(error.toElement()));
    this.write(`<close xmlns='${NS.FRAMING}'/>`);
    if (this.clientClosed) {
      this.ws.close(NORMAL_CLOSURE);
      return;
    }
    this.closeTimer = setTimeout(() => this.ws.close(NORMAL_CLOSURE), CLOSE_GRACE_SECONDS * 1000).unref();
  }

  async startTls(): Promise<void> {
    throw new Error('no STARTTLS over WebSocket (RFC 7395 §3.9)');
  }

  restart(): void {
    // RFC 7395 §3.7: the client sends a new <open/>; every message is parsed on its own anyway.
  }

  pauseReading(held: boolean): void {
    // The pings while held were skipped: the next one starts afresh.
    if (this.gate.hold(held) && !held) this.alive = true;
  }

  channelBinding(type: string): Buffer | undefined {
    return this.info.tlsSocket ? channelBindingFor(this.info.tlsSocket, type) : undefined;
  }

  channelBindingTypes(): string[] {
    return this.info.tlsSocket ? availableChannelBindings(this.info.tlsSocket) : [];
  }

  /** Keepalive: ping, and drop a client that did not answer the previous ping. */
  ping(): void {
    // Its pong waits unread while reading is paused: that says nothing of the client.
    if (this.gate.held) return;
    if (!this.alive) {
      this.log.info('WebSocket client stopped answering pings');
      this.ws.terminate();
      return;
    }
    this.alive = false;
    this.ws.ping();
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    this.alive = true;
    const listener = this.listener!;
    // Over its byte rate: read nothing more until the budget is back (TCP slows the client).
    this.gate.received(Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : (data as Buffer | ArrayBuffer).byteLength);
    if (isBinary) {
      // RFC 7395 §3.2: XMPP messages are text frames.
      if (!this.closing) listener.streamError(new StreamError('bad-format', 'binary WebSocket messages are not XMPP'));
      else this.ws.close(UNSUPPORTED_DATA);
      return;
    }
    let element: Element | undefined;
    try {
      element = this.parser.parse(Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer));
    } catch (err) {
      if (!this.closing) listener.streamError(err instanceof StreamError ? err : new StreamError('internal-server-error'));
      return;
    }
    if (!element) return; // whitespace
    const xmlns = element.attrs.xmlns as string | undefined;
    if (xmlns === NS.FRAMING && element.name === 'close') {
      this.clientClosed = true;
      if (this.closing) this.ws.close(NORMAL_CLOSURE);
      else listener.streamEnd();
      return;
    }
    if (this.closing) return;
    if (element.name === 'open') {
      if (xmlns !== NS.FRAMING) return listener.streamError(new StreamError('invalid-namespace', `<open/> must be in ${NS.FRAMING}`));
      const attrs: Record<string, string> = { ...(element.attrs as Record<string, string>) };
      delete attrs.xmlns;
      return listener.streamStart(attrs);
    }
    if (element.name === 'stream:stream' || xmlns === NS.FRAMING) {
      return listener.streamError(new StreamError('invalid-xml', 'RFC 7395 framing: use <open/> and <close/>'));
    }
    element.parent = null;
    listener.element(element);
  }

  private write(data: string): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(data);
    if (!this.closing) this.sendLimit?.wrote();
  }
}
