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

  async connect(): Promise<void> {
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
    const auth = Buffer.from(`\0${this.opts.user}\0${this.opts.password}`).toString('base64');
    this.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${auth}</auth>`);
    await this.expect(/<success/);
    this.write(open);
    await this.expect(/<\/stream:features>/);
    this.write(`<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${this.opts.resource}</resource></bind></iq>`);
    await this.expect(/<\/jid>/);
    this.write(`<presence/>`);
  }

  get jid(): string {
    return `${this.opts.user}@${this.opts.domain}/${this.opts.resource}`;
  }

  send(to: string, id: string): void {
    this.write(`<message to='${to}' type='chat' id='${id}'><body>benchmark message ${id}</body></message>`);
  }

  close(): void {
    this.socket.end('</stream:stream>');
  }

  private attach(socket: net.Socket): void {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('error', (err) => this.waiting?.reject(err));
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
