import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../log';
import type { RequestInfo, RequestInfoReader } from './request-info';
import type { TlsCredentials } from '../tls';

/** Seconds a new connection has to send its first byte before it is dropped [10]. */
const FIRST_BYTE_TIMEOUT_SECONDS = 10;
/** Seconds open connections get to finish their last response when the listener closes [1]. */
const CLOSE_GRACE_SECONDS = 1;
/** The first byte of a TLS ClientHello record (content type "handshake"). */
const TLS_HANDSHAKE = 0x16;

/** One thing served over HTTP on a port: it says whether a request or upgrade is its own. */
export interface HttpHandler {
  /** Handles the request and returns true, or returns false when the path is not its. */
  request?(req: http.IncomingMessage, res: http.ServerResponse, info: RequestInfo): boolean;
  /** Takes over an `Upgrade:` request (WebSocket) and returns true, or returns false. */
  upgrade?(req: http.IncomingMessage, socket: Duplex, head: Buffer, info: RequestInfo): boolean;
}

export interface HttpListenerOptions {
  port: number;
  host: string;
  /** PEM certificate and key (and session ticket keys): a connection that starts with a TLS handshake gets https/wss. */
  certificate: TlsCredentials;
  handlers: HttpHandler[];
  requestInfo: RequestInfoReader;
  logger: Logger;
}

/**
 * An HTTP listener that serves plain HTTP and HTTPS on the same port: the first byte of each
 * connection says which (a TLS handshake starts with 0x16, an HTTP request with a letter). So
 * `ws://` and `wss://`, `http://` and `https://` all work on 5290/5280 with the node's
 * certificate, and a TLS-terminating proxy in front can use the plain form.
 */
export class HttpListener {
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
    private readonly secure: https.Server,
  ) {
    server.on('connection', (socket: net.Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
  }

  static async listen(opts: HttpListenerOptions): Promise<HttpListener> {
    const { logger } = opts;
    const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
      try {
        const info = opts.requestInfo.read(req);
        for (const handler of opts.handlers) if (handler.request?.(req, res, info)) return;
        res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found\n');
      } catch (err) {
        logger.error('HTTP handler failed', { err: String((err as Error)?.stack ?? err), url: req.url });
        if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end('internal server error\n');
      }
    };
    const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', () => undefined);
      try {
        const info = opts.requestInfo.read(req);
        for (const handler of opts.handlers) if (handler.upgrade?.(req, socket, head, info)) return;
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      } catch (err) {
        logger.error('HTTP upgrade handler failed', { err: String((err as Error)?.stack ?? err), url: req.url });
        socket.destroy();
      }
    };
    const plain = http.createServer(onRequest);
    const secure = https.createServer({ ...opts.certificate, minVersion: 'TLSv1.2' }, onRequest);
    for (const server of [plain, secure]) {
      server.on('upgrade', onUpgrade);
      server.on('clientError', (err: Error, socket: Duplex) => {
        logger.debug('bad HTTP request', { err: err.message });
        if ((socket as net.Socket).writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        else socket.destroy();
      });
    }
    secure.on('tlsClientError', (err: Error) => logger.debug('TLS handshake failed', { err: err.message }));

    const raw = net.createServer((socket) => {
      socket.on('error', (err) => logger.debug('socket error', { err: err.message }));
      socket.setNoDelay(true);
      const timer = setTimeout(() => socket.destroy(), FIRST_BYTE_TIMEOUT_SECONDS * 1000).unref();
      socket.once('readable', () => {
        clearTimeout(timer);
        const first = socket.read(1) as Buffer | null;
        if (!first) return socket.destroy();
        socket.unshift(first);
        // Documented way to hand a connection to an HTTP server (http 'connection' event).
        (first[0] === TLS_HANDSHAKE ? secure : plain).emit('connection', socket);
      });
    });
    raw.on('error', (err) => logger.error('listener error', { err: err.message, port: opts.port }));
    await new Promise<void>((resolve, reject) => {
      raw.once('error', reject);
      raw.listen(opts.port, opts.host, () => {
        raw.off('error', reject);
        resolve();
      });
    });
    return new HttpListener(raw, (raw.address() as net.AddressInfo).port, secure);
  }

  /** https/wss connections from now on get this certificate (SIGHUP) or ticket keys; open ones keep theirs. */
  reloadCertificate(certificate: TlsCredentials): void {
    this.secure.setSecureContext({ ...certificate, minVersion: 'TLSv1.2' });
  }

  /** Stops accepting; open connections finish what they are writing and are then closed. */
  close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.end();
    const grace = new Promise<void>((resolve) =>
      setTimeout(() => {
        for (const socket of this.sockets) socket.destroy();
        resolve();
      }, CLOSE_GRACE_SECONDS * 1000).unref(),
    );
    return Promise.race([closed, grace]);
  }
}
