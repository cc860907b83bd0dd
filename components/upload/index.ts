import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import { Element } from 'ltx';
import { ConfigError } from '../../server/config/properties';
import { StanzaError } from '../../server/errors';
import type { HttpHandler } from '../../server/http/http-listener';
import type { JID } from '../../server/jid';
import { buildDataForm } from '../../server/xml/data-form';
import { NS } from '../../server/xml/ns';
import type { Component, ComponentContext } from '../component';
import { ComponentOptions } from '../component-options';

const UPLOAD = 'urn:xmpp:http:upload:0';
/** Path of upload URLs on the node's web ports. */
export const UPLOAD_PATH = '/upload/';
/** How long a slot may wait for its PUT [300 s]. */
const SLOT_SECONDS = 300;
/** Files deleted per statement when they expire [500]. */
const EXPIRY_BATCH = 500;

const KEYS = ['max-size', 'quota', 'expiry', 'url'] as const;

interface UploadOptions {
  /** Largest file in bytes [10485760 = 10 MiB]. */
  maxSize: number;
  /** Bytes of files one user may keep [104857600 = 100 MiB]; 0: no quota. */
  quota: number;
  /** Seconds files are kept [0: forever]. */
  expiry: number;
  /** Base URL of the files, as clients reach the web ports (a proxy's, say) [https://<domain>:<first BOSH port>/upload]. */
  url?: string;
}

function readOptions(ctx: ComponentContext): UploadOptions {
  const options = new ComponentOptions(ctx, KEYS);
  const url = ctx.option('url')?.trim().replace(/\/+$/, '');
  if (url !== undefined && !/^https?:\/\/[^/]+/.test(url)) throw new ConfigError('must be an http(s) URL', options.key('url'));
  return {
    maxSize: options.integer('max-size', 10 * 1024 * 1024, 1, 1024 * 1024 * 1024),
    quota: options.integer('quota', 100 * 1024 * 1024, 0, Number.MAX_SAFE_INTEGER),
    expiry: options.integer('expiry', 0, 0, Number.MAX_SAFE_INTEGER),
    url,
  };
}

/**
 * XEP-0363 HTTP File Upload at upload.<vhost>: a local user asks for a slot (size and quota are
 * checked), PUTs the file to the URL it got, and everyone with the URL GETs it. Files are kept in
 * the shared database (in chunks), so a file PUT through one node is served by every other node:
 * no forwarding between nodes and no shared file system to set up.
 */
class UploadComponent implements Component {
  private readonly options: UploadOptions;
  readonly http: HttpHandler;

  constructor(private readonly ctx: ComponentContext) {
    this.options = readOptions(ctx);
    this.http = { request: (req, res) => this.request(req, res) };
    ctx.chores?.add({
      name: `${ctx.name}-expiry`,
      run: async () => {
        await ctx.storage.uploads.removeUnused(new Date(Date.now() - SLOT_SECONDS * 1000));
        if (this.options.expiry === 0) return;
        const cutoff = new Date(Date.now() - this.options.expiry * 1000);
        while ((await ctx.storage.uploads.removeOlderThan(cutoff, EXPIRY_BATCH)) === EXPIRY_BATCH);
      },
    });
  }

  async handle(stanza: Element, from: JID, to: JID): Promise<void> {
    if (stanza.name !== 'iq') return;
    const type = stanza.attrs.type as string;
    if (type !== 'get' && type !== 'set') return;
    const payload = stanza.getChildElements()[0];
    let reply: Element;
    try {
      if (to.local !== '' || !payload) throw new StanzaError('service-unavailable');
      if (type === 'get' && payload.is('query', NS.DISCO_INFO) && !payload.attrs.node) reply = this.info();
      else if (type === 'get' && payload.is('query', NS.DISCO_ITEMS)) reply = new Element('query', { xmlns: NS.DISCO_ITEMS });
      else if (type === 'get' && payload.is('request', UPLOAD)) reply = await this.slot(payload, from, to);
      else throw new StanzaError('service-unavailable');
    } catch (err) {
      if (!(err instanceof StanzaError)) throw err;
      const error = new Element('iq', { type: 'error', id: stanza.attrs.id, from: to.toString(), to: from.toString() });
      error.cnode(err.toElement());
      this.ctx.router.route(error, to, from);
      return;
    }
    const result = new Element('iq', { type: 'result', id: stanza.attrs.id, from: to.toString(), to: from.toString() });
    result.cnode(reply);
    this.ctx.router.route(result, to, from);
  }

  /** XEP-0363 §3: identity, feature, and the largest file size in a XEP-0128 form. */
  private info(): Element {
    const query = new Element('query', { xmlns: NS.DISCO_INFO });
    query.c('identity', { category: 'store', type: 'file', name: 'HTTP File Upload' });
    query.c('feature', { var: NS.DISCO_INFO });
    query.c('feature', { var: UPLOAD });
    query.cnode(buildDataForm('result', UPLOAD, [{ var: 'max-file-size', values: [String(this.options.maxSize)] }]));
    return query;
  }

  /** XEP-0363 §4: a slot for one file, with its PUT and GET URLs. */
  private async slot(request: Element, from: JID, to: JID): Promise<Element> {
    if (!this.ctx.config.virtHosts.includes(from.domain) || from.local === '') throw new StanzaError('not-allowed', 'only users of this server may upload');
    const filename = sanitizeFilename(String(request.attrs.filename ?? ''));
    const size = Number(request.attrs.size);
    if (!filename) throw new StanzaError('bad-request', 'a file name is required');
    if (!Number.isSafeInteger(size) || size < 0) throw new StanzaError('bad-request', 'the size must be a number of bytes');
    if (size > this.options.maxSize) {
      // §4.2: not-acceptable with <file-too-large><max-file-size/></file-too-large>.
      const app = new Element('file-too-large', { xmlns: UPLOAD });
      app.c('max-file-size').t(String(this.options.maxSize));
      throw new StanzaError('not-acceptable', `the file is larger than ${this.options.maxSize} bytes`, 'modify', app);
    }
    const user = from.bareString();
    const usage = this.options.quota > 0 ? await this.ctx.storage.uploads.usage(user, new Date(Date.now() - SLOT_SECONDS * 1000)) : 0;
    if (this.options.quota > 0 && usage + size > this.options.quota) {
      throw new StanzaError('resource-constraint', `your files would take more than your quota of ${this.options.quota} bytes; old files are deleted as they expire`);
    }
    const contentType = String(request.attrs['content-type'] ?? '').trim() || 'application/octet-stream';
    const id = randomBytes(24).toString('base64url');
    await this.ctx.storage.uploads.createSlot({ id, user, filename, size, contentType: contentType.slice(0, 255), createdAt: new Date() });
    const url = `${this.baseUrl(to.domain.slice(this.ctx.name.length + 1))}/${id}/${encodeURIComponent(filename)}`;
    const slot = new Element('slot', { xmlns: UPLOAD });
    slot.c('put', { url });
    slot.c('get', { url });
    return slot;
  }

  private baseUrl(vhost: string): string {
    if (this.options.url) return this.options.url;
    const { boshPorts, wsPorts, httpPort } = this.ctx.config;
    const port = boshPorts[0] ?? wsPorts[0] ?? httpPort;
    return `https://${vhost}:${port}${UPLOAD_PATH.replace(/\/$/, '')}`;
  }

  // ---- HTTP (any node) ----

  private request(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    const path = (req.url ?? '').split('?')[0];
    if (!path.startsWith(UPLOAD_PATH)) return false;
    const [id] = path.slice(UPLOAD_PATH.length).split('/');
    const headers = {
      // Web clients PUT and GET from their own origin.
      'Access-Control-Allow-Origin': '*',
      'Access-Control-Allow-Methods': 'GET, HEAD, PUT, OPTIONS',
      'Access-Control-Allow-Headers': 'Content-Type',
      'Access-Control-Max-Age': '86400',
    };
    const fail = (status: number, text: string) => {
      if (!res.headersSent) res.writeHead(status, { ...headers, 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(`${text}\n`);
    };
    const done = (work: Promise<void>) => work.catch((err) => {
      this.ctx.logger.error('upload request failed', { err: String(err) });
      fail(500, 'internal server error');
    });
    switch (req.method) {
      case 'OPTIONS':
        res.writeHead(204, headers).end();
        return true;
      case 'PUT':
        done(this.put(id, req, res, headers, fail));
        return true;
      case 'GET':
      case 'HEAD':
        done(this.get(id, req, res, headers, fail));
        return true;
      default:
        res.writeHead(405, { ...headers, Allow: 'GET, HEAD, PUT, OPTIONS' }).end();
        return true;
    }
  }

  private async put(id: string, req: http.IncomingMessage, res: http.ServerResponse, headers: Record<string, string>, fail: (status: number, text: string) => void): Promise<void> {
    const slot = id ? await this.ctx.storage.uploads.slot(id) : undefined;
    if (!slot || (!slot.uploadedAt && Date.now() - slot.createdAt.getTime() > SLOT_SECONDS * 1000)) return fail(404, 'no such upload slot (or it expired)');
    if (slot.uploadedAt) return fail(409, 'this slot was used already');
    const length = Number(req.headers['content-length']);
    if (length !== slot.size) return fail(400, `Content-Length must be the size asked for (${slot.size})`);
    const type = String(req.headers['content-type'] ?? '').trim();
    if (type && type !== slot.contentType) return fail(400, `Content-Type must be the one asked for (${slot.contentType})`);
    const parts: Buffer[] = [];
    let received = 0;
    for await (const chunk of req) {
      received += (chunk as Buffer).length;
      if (received > slot.size) return fail(413, 'more bytes than announced');
      parts.push(chunk as Buffer);
    }
    if (received !== slot.size) return fail(400, 'fewer bytes than announced');
    if (!(await this.ctx.storage.uploads.store(id, Buffer.concat(parts)))) return fail(409, 'this slot was used already');
    res.writeHead(201, { ...headers, 'Content-Length': '0' }).end();
  }

  private async get(id: string, req: http.IncomingMessage, res: http.ServerResponse, headers: Record<string, string>, fail: (status: number, text: string) => void): Promise<void> {
    const slot = id ? await this.ctx.storage.uploads.slot(id) : undefined;
    if (!slot?.uploadedAt) return fail(404, 'no such file');
    // The first chunk is read before answering: a file expiring meanwhile is a 404, not a 200
    // with a short body.
    const chunks = this.ctx.storage.uploads.chunks(id);
    const first = slot.size > 0 ? await chunks.next() : undefined;
    if (first?.done) return fail(404, 'no such file');
    const inline = /^(image|video|audio)\//.test(slot.contentType);
    res.writeHead(200, {
      ...headers,
      'Content-Type': slot.contentType,
      'Content-Length': String(slot.size),
      'Content-Disposition': `${inline ? 'inline' : 'attachment'}; filename*=UTF-8''${encodeURIComponent(slot.filename)}`,
      // A file is data, never a page of this origin: no sniffing, no scripts.
      'X-Content-Type-Options': 'nosniff',
      'Content-Security-Policy': "default-src 'none'; sandbox",
      'Cache-Control': 'public, max-age=31536000, immutable',
    });
    if (req.method === 'HEAD') {
      await chunks.return(undefined);
      res.end();
      return;
    }
    let sent = 0;
    const write = async (chunk: Buffer) => {
      sent += chunk.length;
      if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve));
    };
    if (first) await write(first.value);
    for await (const chunk of chunks) await write(chunk);
    // Removed while it was being sent: the client must see a broken download, not a complete one.
    if (sent !== slot.size) res.destroy();
    else res.end();
  }
}

/** The last path segment, without control characters or separators, at most 200 characters. */
function sanitizeFilename(name: string): string {
  const base = name.split(/[\\/]/).pop() ?? '';
  // eslint-disable-next-line no-control-regex
  return [...base.replace(/[\u0000-\u001f\u007f]/g, '').trim()].slice(0, 200).join('');
}

export function createUpload(ctx: ComponentContext): Component {
  return new UploadComponent(ctx);
}
