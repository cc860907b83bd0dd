import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { normaliseAddress } from '../net-address';

/** What the transports need to know about an HTTP request or WebSocket handshake. */
export interface RequestInfo {
  /**
   * Encrypted end to end as far as we can tell: TLS on this connection, or a trusted proxy
   * (--trusted-proxies) that says it took the request over https (`X-Forwarded-Proto: https`).
   * Decides whether PLAIN may be offered.
   */
  secure: boolean;
  /** The client's address and port (from X-Forwarded-For when a trusted proxy sent the request). */
  remoteAddress: string;
  /** Host and port the client used (Host header, or X-Forwarded-Host from a trusted proxy). */
  host: string;
  /** The TLS socket of a direct TLS connection, for channel binding; undefined behind a proxy. */
  tlsSocket?: tls.TLSSocket;
  /** The request came through a trusted proxy, which serves its own public host and ports. */
  proxied: boolean;
}

/** Reads RequestInfo, believing forwarding headers only from the configured proxy addresses. */
export class RequestInfoReader {
  private readonly trusted: ReadonlySet<string>;

  constructor(trustedProxies: readonly string[]) {
    this.trusted = new Set(trustedProxies.map(normaliseAddress));
  }

  read(req: IncomingMessage): RequestInfo {
    const socket = req.socket;
    const peer = normaliseAddress(socket.remoteAddress ?? '');
    const tlsSocket = socket instanceof tls.TLSSocket && socket.encrypted ? socket : undefined;
    const direct: RequestInfo = {
      secure: tlsSocket !== undefined,
      remoteAddress: `${peer}:${socket.remotePort ?? 0}`,
      host: headerValue(req, 'host') ?? '',
      tlsSocket,
      proxied: false,
    };
    if (!this.trusted.has(peer)) return direct;
    // A request from the proxy's address without forwarding headers is the proxy's own (a health check).
    if (!('x-forwarded-proto' in req.headers || 'x-forwarded-for' in req.headers || 'x-forwarded-host' in req.headers)) return direct;
    const proto = headerValue(req, 'x-forwarded-proto')?.split(',')[0].trim().toLowerCase();
    return {
      secure: direct.secure || proto === 'https' || proto === 'wss',
      remoteAddress: this.forwardedFor(req) ?? direct.remoteAddress,
      host: headerValue(req, 'x-forwarded-host')?.split(',')[0].trim() || direct.host,
      // Behind a proxy the TLS session is the proxy's: no channel binding.
      tlsSocket: undefined,
      proxied: true,
    };
  }

  /** The right-most X-Forwarded-For address that is not one of our proxies: the client. */
  private forwardedFor(req: IncomingMessage): string | undefined {
    const chain = (headerValue(req, 'x-forwarded-for') ?? '').split(',').map((a) => normaliseAddress(a.trim())).filter((a) => net.isIP(a) !== 0);
    for (let i = chain.length - 1; i >= 0; i--) if (!this.trusted.has(chain[i])) return chain[i];
    return chain[0];
  }
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
