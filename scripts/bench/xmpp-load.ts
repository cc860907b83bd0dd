import net from 'node:net';
import tls from 'node:tls';

/**
 * A deliberately small XMPP client for load generation: STARTTLS, SASL PLAIN, bind, presence,
 * then raw message traffic. It parses just enough (message ids) to measure latency, so the load
 * generator itself stays cheap next to the server it measures.
 */
export class LoadClient {
  private socket!: net.Socket;
  private buffer = '';
  private waiting?: { pattern: RegExp; resolve: (text: string) => void; reject: (err: Error) => void };
  onMessage?: (id: string) => void;

  constructor(readonly opts: { host: string; port: number; domain: string; user: string; password: string; resource: string }) {}

  /** TCP, the stream header, STARTTLS, the header again: up to the features of the encrypted stream. */
  private async secure(): Promise<string> {
    const { host, port, domain } = this.opts;
    const plain = net.connect({ host, port });
    await once(plain, 'connect');
    this.attach(plain);
    const open = `<?xml version='1.0'?><stream:stream to='${domain}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`;
    this.write(open);
    await this.expect(/<\/stream:features>/);
    this.write(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`);
    await this.expect(/<proceed/);
    plain.removeAllListeners('data');
    const secure = tls.connect({ socket: plain, servername: domain, rejectUnauthorized: false });
    await once(secure, 'secureConnect');
    this.attach(secure);
    this.write(open);
    await this.expect(/<\/stream:features>/);
    return open;
  }

  /** XEP-0077 in-band registration of this client's account (an existing one is fine), then the connection closes. */
  async register(): Promise<void> {
    await this.secure();
    this.write(`<iq type='set' id='reg1'><query xmlns='jabber:iq:register'><username>${this.opts.user}</username><password>${this.opts.password}</password></query></iq>`);
    const answer = await this.expect(/<\/iq>|<iq[^>]*\/>/);
    if (!/type=['"]result['"]/.test(answer) && !/<conflict/.test(answer)) throw new Error(`registration of ${this.opts.user} refused: ${answer.slice(0, 300)}`);
    this.close();
  }

  /** Milliseconds the last connect() spent up to the encrypted stream's features, and in all. */
  timings = { secured: 0, total: 0 };

  async connect(): Promise<void> {
    const started = performance.now();
    const open = await this.secure();
    this.timings.secured = performance.now() - started;
    const auth = Buffer.from(`\0${this.opts.user}\0${this.opts.password}`).toString('base64');
    this.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${auth}</auth>`);
    await this.expect(/<success/);
    this.write(open);
    await this.expect(/<\/stream:features>/);
    this.write(`<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${this.opts.resource}</resource></bind></iq>`);
    await this.expect(/<\/jid>/);
    this.write(`<presence/>`);
    this.timings.total = performance.now() - started;
  }

  get jid(): string {
    return `${this.opts.user}@${this.opts.domain}/${this.opts.resource}`;
  }

  /** Messages carry a XEP-0334 <no-store/> hint: a server that archives (XEP-0313) leaves them out. */
  noStore = false;

  send(to: string, id: string): void {
    const hint = this.noStore ? `<no-store xmlns='urn:xmpp:hints'/>` : '';
    this.write(`<message to='${to}' type='chat' id='${id}'><body>benchmark message ${id}</body>${hint}</message>`);
  }

  /** A presence update with a <show/> (the session stays available). */
  presenceShow(show: string): void {
    this.write(`<presence><show>${show}</show></presence>`);
  }

  close(): void {
    this.socket.end('</stream:stream>');
  }

  /** Ends the stream and resolves once the server has closed the connection. */
  closeAndWait(): Promise<void> {
    if (this.socket.destroyed) return Promise.resolve();
    const closed = new Promise<void>((resolve) => this.socket.once('close', () => resolve()));
    this.close();
    return closed;
  }

  destroy(): void {
    this.socket?.destroy();
  }

  private attach(socket: net.Socket): void {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('error', (err) => this.waiting?.reject(err));
    // A server that goes away while we wait for its answer fails the wait (rather than leaving it pending forever).
    socket.on('close', () => this.waiting?.reject(new Error(`${this.opts.user}: the server closed the connection`)));
    // No setEncoding: the plain socket is handed to TLS after STARTTLS and must stay binary.
    const decoder = new TextDecoder();
    socket.on('data', (data: Buffer) => this.onData(decoder.decode(data, { stream: true })));
    this.buffer = '';
  }

  private onData(data: string): void {
    if (this.waiting) {
      this.buffer += data;
      if (this.waiting.pattern.test(this.buffer)) {
        const { resolve } = this.waiting;
        const text = this.buffer;
        this.waiting = undefined;
        this.buffer = '';
        resolve(text);
      }
      return;
    }
    if (!this.onMessage) return;
    this.buffer += data;
    for (let end = this.buffer.indexOf('</message>'); end !== -1; end = this.buffer.indexOf('</message>')) {
      const stanza = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + '</message>'.length);
      // Our ids are 'm<number>', on the <message> element just before its <body>.
      const match = /id=['"](m\d+)['"][^<]*<body/.exec(stanza);
      if (match) this.onMessage(match[1]);
    }
  }

  private expect(pattern: RegExp): Promise<string> {
    return new Promise((resolve, reject) => {
      this.waiting = { pattern, resolve, reject };
      if (pattern.test(this.buffer)) {
        const text = this.buffer;
        this.waiting = undefined;
        this.buffer = '';
        resolve(text);
      }
    });
  }

  private write(text: string): void {
    this.socket.write(text);
  }
}

function once(emitter: net.Socket, event: string): Promise<void> {
  return new Promise((resolve, reject) => {
    emitter.once(event, () => resolve());
    emitter.once('error', reject);
  });
}
