import { parse, type Element } from 'ltx';
import { httpRequest, type HttpReply } from './http';
import { PASSWORD } from './server';

export const HTTPBIND = 'http://jabber.org/protocol/httpbind';
export const XBOSH = 'urn:xmpp:xbosh';

export interface BoshReply extends HttpReply {
  /** The parsed <body/> (undefined when the reply is not XML). */
  body?: Element;
}

/**
 * A BOSH client spoken by hand over real HTTP, for protocol tests: it numbers requests, keeps
 * everything the server sent, and long-polls when asked to wait for something.
 */
export class BoshRaw {
  /** The rid the next request uses. */
  rid = 1_000_000 + Math.floor(Math.random() * 1_000_000_000);
  sid?: string;
  /** Every response body received, in order. */
  readonly received: string[] = [];

  constructor(readonly url: string) {}

  /** POSTs any text to the endpoint. */
  static async post(url: string, text: string, headers: Record<string, string> = {}): Promise<BoshReply> {
    const reply = await httpRequest(url, { method: 'POST', body: text, headers: { 'Content-Type': 'text/xml; charset=utf-8', ...headers } });
    let body: Element | undefined;
    try {
      body = parse(reply.text) as Element;
    } catch {
      body = undefined;
    }
    return { ...reply, body };
  }

  /** The text of a <body/> request: attributes (rid and sid added) and payload. */
  bodyText(attrs: Record<string, string>, payload = ''): string {
    const all: Record<string, string> = { ...attrs };
    if (this.sid !== undefined && all.sid === undefined) all.sid = this.sid;
    let text = `<body xmlns='${HTTPBIND}'`;
    for (const [k, v] of Object.entries(all)) text += ` ${k}='${v}'`;
    return payload ? `${text}>${payload}</body>` : `${text}/>`;
  }

  /** Sends a request with the next rid (or `rid`), recording the response. */
  async request(attrs: Record<string, string> = {}, payload = '', rid?: number): Promise<BoshReply> {
    const useRid = rid ?? this.rid++;
    const reply = await BoshRaw.post(this.url, this.bodyText({ rid: String(useRid), ...attrs }, payload));
    this.received.push(reply.text);
    return reply;
  }

  /** Creates the session (XEP-0206 attributes included); `attrs` may set wait, hold, ... */
  async create(attrs: Record<string, string> = {}): Promise<BoshReply> {
    const reply = await this.request({ to: 'localhost', wait: '60', hold: '1', ver: '1.11', 'xml:lang': 'en', 'xmlns:xmpp': XBOSH, 'xmpp:version': '1.0', ...attrs });
    this.sid = reply.body?.attrs.sid;
    return reply;
  }

  /** Everything received so far, as one string. */
  get text(): string {
    return this.received.join('\n');
  }

  /**
   * Resolves with the first response (from index `since` of `received` on) that matches `pattern`,
   * long-polling with empty requests while none does.
   */
  async waitFor(pattern: RegExp, since = 0, ms = 10000): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const seen = this.received.slice(since).find((r) => pattern.test(r));
      if (seen !== undefined) return seen;
      if (Date.now() >= deadline) throw new Error(`timed out waiting for ${pattern}; received: ${this.text}`);
      const reply = await this.request();
      if (reply.body?.attrs.type === 'terminate' && !pattern.test(reply.text)) throw new Error(`session terminated: ${reply.text}`);
    }
  }

  /** Sends a request and long-polls until a response matches `pattern`. */
  async expect(attrs: Record<string, string>, payload: string, pattern: RegExp): Promise<string> {
    const since = this.received.length;
    await this.request(attrs, payload);
    return this.waitFor(pattern, since);
  }

  /**
   * A whole login by hand (XEP-0206): session, SASL PLAIN (the endpoint must be https, where PLAIN
   * is offered), restart, resource binding and initial presence. `attrs` go into the creation request.
   */
  async login(local: string, resource: string, attrs: Record<string, string> = {}): Promise<void> {
    const created = await this.create(attrs);
    if (!this.sid) throw new Error(`no session: ${created.text}`);
    await this.waitFor(/<mechanism>PLAIN<\/mechanism>/);
    const auth = Buffer.from(`\0${local}\0${PASSWORD}`).toString('base64');
    await this.expect({}, `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${auth}</auth>`, /<success/);
    await this.expect({ 'xmlns:xmpp': XBOSH, 'xmpp:restart': 'true', to: 'localhost' }, '', /urn:ietf:params:xml:ns:xmpp-bind/);
    await this.expect({}, `<iq xmlns='jabber:client' type='set' id='bind-1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${resource}</resource></bind></iq>`, /<jid>/);
    await this.request({}, `<presence xmlns='jabber:client'/>`);
  }
}
