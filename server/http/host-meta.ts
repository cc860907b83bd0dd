import type { IncomingMessage, ServerResponse } from 'node:http';
import { escapeXML } from 'ltx';
import { BOSH_PATH } from '../transports/bosh';
import { WEBSOCKET_PATHS } from '../transports/websocket';
import type { HttpHandler } from './http-listener';
import type { RequestInfo } from './request-info';

const XRD_NS = 'http://docs.oasis-open.org/ns/xri/xrd-1.0';
const REL_BOSH = 'urn:xmpp:alt-connections:xbosh';
const REL_WEBSOCKET = 'urn:xmpp:alt-connections:websocket';
/** The WebSocket path announced (the endpoint also answers on `/`). */
const WEBSOCKET_PATH = WEBSOCKET_PATHS[0];

export interface HostMetaOptions {
  /** The port WebSocket listens on, or undefined when it is disabled. */
  wsPort?: number;
  /** The port BOSH listens on, or undefined when it is disabled. */
  boshPort?: number;
}

/**
 * XEP-0156 connection-method discovery: /.well-known/host-meta (XRD) and host-meta.json name
 * the WebSocket and BOSH URLs, built from the Host the client used. Directly, that is this
 * node's host name with the WebSocket and BOSH ports (wss/https when the request came over
 * TLS); through a trusted proxy, the proxy's public host with no port of ours, since it maps
 * /xmpp-websocket and /http-bind to the nodes itself.
 */
export class HostMeta implements HttpHandler {
  constructor(private readonly opts: HostMetaOptions) {}

  request(req: IncomingMessage, res: ServerResponse, info: RequestInfo): boolean {
    const path = (req.url ?? '/').split('?')[0];
    const json = path === '/.well-known/host-meta.json';
    if (!json && path !== '/.well-known/host-meta') return false;
    const headers = { 'Access-Control-Allow-Origin': '*', 'Cache-Control': 'max-age=3600' };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...headers, Allow: 'GET, HEAD', 'Content-Length': '0' }).end();
      return true;
    }
    const links = this.links(info, req.socket.localAddress ?? 'localhost');
    const body = json
      ? JSON.stringify({ links: links.map(([rel, href]) => ({ rel, href })) }, null, 2) + '\n'
      : `<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='${XRD_NS}'>\n` +
        links.map(([rel, href]) => `  <Link rel='${rel}' href='${escapeXML(href)}'/>\n`).join('') +
        '</XRD>\n';
    res.writeHead(200, {
      ...headers,
      'Content-Type': json ? 'application/json; charset=utf-8' : 'application/xrd+xml; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
    });
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  }

  private links(info: RequestInfo, fallbackHost: string): [string, string][] {
    const secure = info.secure;
    const links: [string, string][] = [];
    const base = (scheme: string, port: number) => {
      if (info.proxied) return `${scheme}://${info.host || fallbackHost}`;
      return `${scheme}://${hostName(info.host) || bracket(fallbackHost)}:${port}`;
    };
    if (this.opts.wsPort !== undefined) links.push([REL_WEBSOCKET, `${base(secure ? 'wss' : 'ws', this.opts.wsPort)}${WEBSOCKET_PATH}`]);
    if (this.opts.boshPort !== undefined) links.push([REL_BOSH, `${base(secure ? 'https' : 'http', this.opts.boshPort)}${BOSH_PATH}`]);
    return links;
  }
}

/** The host part of a Host header ("example.com:5280" -> "example.com", "[::1]:80" -> "[::1]"). */
function hostName(host: string): string {
  const m = /^(\[[^\]]*\]|[^:]*)(:\d+)?$/.exec(host.trim());
  return m ? m[1] : '';
}

function bracket(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}
