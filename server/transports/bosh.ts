import { nodeOfId, nodeTaggedId } from '../node-id';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Element } from 'ltx';
import type { TransportListener } from '../c2s/transport';
import { StreamError } from '../errors';
import type { HttpHandler } from '../http/http-listener';
import type { RequestInfo } from '../http/request-info';
import type { Logger } from '../log';
import { FragmentParser } from '../xml/fragment-parser';
import { NS } from '../xml/ns';
import type { ParserLimits } from '../xml/stream-parser';
import { bindingError, BoshSession, parseRid, type BoshResponse } from './bosh-session';
import { hostOf } from '../net-address';
import type { AddressLimits } from './address-limits';

/** Where BOSH is served (XEP-0206 names no path; /http-bind is what clients expect). */
export const BOSH_PATH = '/http-bind';
/** Bytes a request may add to --max-stanza-size for the <body/> wrapper and its attributes [4096]. */
const WRAPPER_ALLOWANCE = 4096;
/** Random bytes in a session id [16]: 128 bits, unguessable (XEP-0124 §7.2 "unpredictable"). */
const SID_RANDOM_BYTES = 16;

/**
 * Hands a request for a session owned by another node to that node (cluster link), resolving
 * with its response; undefined when the owner is unknown or unreachable. Not built yet: the
 * seam for DESIGN's "a request that lands on a node that does not own its session is forwarded".
 */
export type BoshForwarder = (owner: string, body: Element, info: RequestInfo) => Promise<BoshResponse | undefined>;

export interface BoshSessionsOptions {
  /** This node's name (--cluster-hostname); every sid carries it. */
  node: string;
  /** Served domains: a session creation request to another is refused with host-unknown. */
  hosts: ReadonlySet<string>;
  /** Seconds without a held request after which a session ends (--bosh-inactivity). */
  inactivity: number;
  /** Bytes that may wait for a client to fetch them before its stream is closed (--client-send-queue). */
  sendQueueBytes?: () => number;
  logger: Logger;
  /** Builds the stream state machine for a new session (main attaches a C2SStream). */
  onTransport: (session: BoshSession) => TransportListener;
  /** Per-address limits: a session counts as one connection of its client's address while it lives. */
  addressLimits?: AddressLimits;
}

/**
 * The BOSH sessions of this node, behind one call: handle(<body/>, request) resolves with the
 * response. The HTTP endpoint calls it for requests that arrive here; the cluster link can call
 * it for requests forwarded from a node that does not own the sid.
 */
export class BoshSessions {
  private readonly sessions = new Map<string, BoshSession>();
  private nextId = 0;
  private open = 0;
  private forward?: BoshForwarder;

  constructor(private readonly opts: BoshSessionsOptions) {}

  /** Installs the cluster's forwarder for sids owned by other nodes (see BoshForwarder). */
  setForwarder(forward: BoshForwarder): void {
    this.forward = forward;
  }

  /** Sessions that are open (not terminated). */
  get count(): number {
    return this.open;
  }

  async handle(body: Element, info: RequestInfo): Promise<BoshResponse> {
    const sid = body.attrs.sid as string | undefined;
    if (sid === undefined) return this.create(body, info);
    const session = this.sessions.get(sid);
    if (session) return session.request(body);
    const owner = nodeOfId(sid);
    if (owner !== undefined && owner !== this.opts.node && this.forward) {
      const forwarded = await this.forward(owner, body, info);
      if (forwarded) return forwarded;
    }
    // XEP-0124 §17.2: an unknown sid is item-not-found.
    return bindingError('item-not-found');
  }

  /** Ends every session with a stream error (system-shutdown when the node stops). */
  closeAll(error: StreamError): void {
    for (const session of [...this.sessions.values()]) session.close(error);
  }

  private create(body: Element, info: RequestInfo): Promise<BoshResponse> {
    const legacy = body.attrs.ver === undefined;
    const rid = parseRid(body.attrs.rid);
    if (rid === undefined) return Promise.resolve(bindingError('bad-request', legacy ? 400 : 200));
    const to = ((body.attrs.to as string | undefined) ?? '').toLowerCase();
    // XEP-0124 §17.2: host-unknown "the target domain specified in the 'to' attribute ... is unknown".
    if (to !== '' && !this.opts.hosts.has(to)) return Promise.resolve(bindingError('host-unknown'));
    // A session is a connection for the per-address limits (the address a trusted proxy names).
    const admitted = this.opts.addressLimits?.admit(hostOf(info.remoteAddress));
    if (admitted && 'refused' in admitted) {
      this.opts.logger.info('BOSH session refused', { remote: info.remoteAddress, reason: admitted.refused });
      return Promise.resolve(bindingError('policy-violation', legacy ? 403 : 200));
    }
    const sid = nodeTaggedId(SID_RANDOM_BYTES, this.opts.node);
    const id = `bosh-${++this.nextId}`;
    const session: BoshSession = new BoshSession({
      id,
      sid,
      creation: body,
      creationRid: rid,
      info,
      inactivity: this.opts.inactivity,
      sendQueueBytes: this.opts.sendQueueBytes,
      logger: this.opts.logger.child({ conn: id }),
      onEnd: (tombstone) => {
        this.open--;
        admitted?.release();
        // A final response nobody fetched yet stays available for one inactivity period.
        if (!tombstone) this.sessions.delete(sid);
        else setTimeout(() => this.sessions.delete(sid), this.opts.inactivity * 1000).unref();
      },
    });
    if (admitted) session.authenticated = admitted.authenticated;
    this.sessions.set(sid, session);
    this.open++;
    return session.start(this.opts.onTransport(session));
  }
}

export interface BoshEndpointOptions {
  sessions: BoshSessions;
  limits: ParserLimits;
  logger: Logger;
}

/** CORS (for browser clients on other origins): any origin may POST XML here. */
const CORS_HEADERS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'GET, POST, OPTIONS',
  'Access-Control-Allow-Headers': 'Content-Type',
  'Access-Control-Max-Age': '86400',
};

/**
 * The HTTP side of BOSH at /http-bind: CORS, reading and parsing the <body/>, and writing the
 * session's answer. Everything about sessions is in BoshSessions.
 */
export class BoshEndpoint implements HttpHandler {
  private readonly parser: FragmentParser;
  private readonly maxBytes: number;

  constructor(private readonly opts: BoshEndpointOptions) {
    this.maxBytes = opts.limits.maxStanzaSize + WRAPPER_ALLOWANCE;
    this.parser = new FragmentParser(opts.limits, { rootDepth: 1, maxBytes: this.maxBytes });
  }

  request(req: IncomingMessage, res: ServerResponse, info: RequestInfo): boolean {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== BOSH_PATH && path !== `${BOSH_PATH}/`) return false;
    switch (req.method) {
      case 'OPTIONS':
        res.writeHead(204, { ...CORS_HEADERS, 'Content-Length': '0' }).end();
        return true;
      case 'GET': {
        const text = 'XMPP over BOSH (XEP-0124, XEP-0206): POST <body/> elements here.\n';
        res.writeHead(200, { ...CORS_HEADERS, 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text) }).end(text);
        return true;
      }
      case 'POST':
        this.post(req, res, info);
        return true;
      default:
        res.writeHead(405, { ...CORS_HEADERS, Allow: 'GET, POST, OPTIONS', 'Content-Length': '0' }).end();
        return true;
    }
  }

  private post(req: IncomingMessage, res: ServerResponse, info: RequestInfo): void {
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (chunk: Buffer) => {
      if (refused) return;
      size += chunk.length;
      if (size > this.maxBytes) {
        refused = true;
        this.opts.logger.info('BOSH request too large', { remote: info.remoteAddress, bytes: size });
        write(res, { ...bindingError('policy-violation'), status: 413 }, true);
        return;
      }
      chunks.push(chunk);
    });
    req.on('error', () => undefined);
    req.on('end', () => {
      if (refused) return;
      let body: Element | undefined;
      try {
        body = this.parser.parse(Buffer.concat(chunks));
      } catch (err) {
        const text = err instanceof StreamError ? err.text ?? err.condition : String(err);
        this.opts.logger.info('BOSH request is not XML', { remote: info.remoteAddress, err: text });
      }
      // XEP-0124 §17.2 bad-request: "the format of an HTTP header or binding element ... is unacceptable".
      if (!body || body.name !== 'body' || body.attrs.xmlns !== NS.HTTPBIND) {
        write(res, bindingError('bad-request', 400));
        return;
      }
      this.opts.sessions.handle(body, info).then(
        (response) => write(res, response),
        (err) => {
          this.opts.logger.error('BOSH request failed', { err: String((err as Error)?.stack ?? err) });
          write(res, bindingError('internal-server-error', 500));
        },
      );
    });
  }
}

function write(res: ServerResponse, response: BoshResponse, close = false): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(response.status, {
    ...CORS_HEADERS,
    'Content-Type': response.contentType,
    'Content-Length': Buffer.byteLength(response.body),
    'Cache-Control': 'no-store',
    ...(close ? { Connection: 'close' } : {}),
  });
  res.end(response.body);
}
