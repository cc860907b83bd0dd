import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { client as xmppClient, xml } from '@xmpp/client';
import { WebSocket as NodeWebSocket } from 'ws';
import type { Element } from 'ltx';
import { deriveScramCredentials } from '../../server/c2s/sasl/scram';
import { loadConfig } from '../../server/config/config';
import type { Config } from '../../server/config/types';
import { createLogger, silentLogger } from '../../server/log';
import { startNode, type XmppNode } from '../../server/main';
import { CLIENT_TIMEOUT_MS, mendLibraryRaces, withoutSasl2 } from './client';
import { seedTestCertificate } from './certificate';
import { freePort } from './ports';

// The test servers use a self-signed certificate generated on first start.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
process.removeAllListeners('warning');
// @xmpp/client's WebSocket transport uses the global WebSocket, which Node 20 does not have by default.
(globalThis as { WebSocket?: unknown }).WebSocket ??= NodeWebSocket;

type Test = { teardown(fn: () => unknown): void };

export { xml };
export type XmppClient = ReturnType<typeof xmppClient>;

export { freePort };

/** How long a test server's stop may take before its test fails [60 s; it takes well under 1 s]. */
const STOP_DEADLINE_MS = 60_000;

export interface TestServer {
  node: XmppNode;
  /** The configuration it started with (a copy with changes is what node.reload takes). */
  config: Config;
  domain: string;
  port: number;
  tlsPort: number;
  /** WebSocket (ws:// and wss:// on the same port, path /xmpp-websocket), BOSH (/http-bind) and /health /status /metrics. */
  wsPort: number;
  boshPort: number;
  httpPort: number;
  addUser(local: string, password?: string): Promise<string>;
  /** A logged-in @xmpp/client (STARTTLS, SCRAM-SHA-1 by default) that is stopped at teardown. */
  login(local: string, opts?: LoginOptions): Promise<XmppClient>;
}

export interface LoginOptions {
  password?: string;
  resource?: string;
  /** 'starttls' on the c2s port (default), 'direct' TLS on the c2s-ssl port, or WebSocket ('ws', 'wss'). */
  tls?: 'starttls' | 'direct' | 'ws' | 'wss';
  mechanism?: 'SCRAM-SHA-1' | 'PLAIN';
  /** Send initial presence after binding [true]. */
  presence?: boolean;
  /** Ask for XEP-0198 resumption when enabling stream management, as @xmpp/client does by default [true]. */
  resumption?: boolean;
  /** Log in with SASL2 and Bind2 as @xmpp/client does by default [false: RFC 6120 SASL and binding, so the resource is the one asked for]. */
  sasl2?: boolean;
}

export const PASSWORD = 'secret-password';

/**
 * Starts a node in this process on free loopback ports, with its own data folder: TCP (STARTTLS
 * and direct TLS), WebSocket, BOSH and the HTTP endpoints. `args` (--key=value) come last and win.
 */
export async function startTestServer(t: Test, opts: { dbUri?: string; args?: string[] } = {}): Promise<TestServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xmpp-test-'));
  const port = await freePort();
  const tlsPort = await freePort();
  const [wsPort, boshPort, httpPort] = [await freePort(), await freePort(), await freePort()];
  const config = loadConfig([
    '--virt-hosts=localhost',
    `--c2s-ports=${port}`,
    `--c2s-ssl-ports=${tlsPort}`,
    // No federation unless a test asks for it (5269 is one port for the whole machine).
    '--s2s-ports=0',
    '--s2s-ssl-ports=0',
    `--ws-ports=${wsPort}`,
    `--bosh-ports=${boshPort}`,
    `--http-port=${httpPort}`,
    '--bind-address=127.0.0.1',
    `--user-db-uri=${opts.dbUri ?? `sqlite:${path.join(dir, 'xmpp.sqlite')}`}`,
    `--data-dir=${dir}`,
    '--scram-iterations=4096',
    ...(opts.args ?? []),
  ]);
  // XMPP_TEST_DEBUG=c2s,router,... shows those parts' debug lines while a test runs.
  const debug = process.env.XMPP_TEST_DEBUG;
  const logger = debug ? createLogger({ ...config, logLevel: 'info', debug: debug.split(',') }) : silentLogger();
  if (config.tlsCert === undefined) await seedTestCertificate(dir, config.virtHosts);
  const node = await startNode(config, logger);
  const clients: XmppClient[] = [];
  t.teardown(async () => {
    await Promise.all(clients.map((c) => c.stop().catch(() => undefined)));
    // A stop that hangs fails the test saying where, instead of running into the file's timeout.
    let timer: NodeJS.Timeout | undefined;
    const stuck = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`node.stop() has not ended after ${STOP_DEADLINE_MS / 1000} s; it is ${node.stopStep ?? 'past its last step'}`)), STOP_DEADLINE_MS);
    });
    try {
      await Promise.race([node.stop(), stuck]);
    } finally {
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const domain = 'localhost';
  return {
    node,
    config,
    domain,
    port,
    tlsPort,
    wsPort: node.ports.ws[0] ?? 0,
    boshPort: node.ports.bosh[0] ?? 0,
    httpPort: node.ports.http ?? 0,
    async addUser(local, password = PASSWORD) {
      const jid = `${local}@${domain}`;
      await node.storage.users.create(jid, deriveScramCredentials(password, 4096));
      return jid;
    },
    async login(local, login = {}) {
      const password = login.password ?? PASSWORD;
      const services = {
        starttls: `xmpp://127.0.0.1:${port}`,
        direct: `xmpps://127.0.0.1:${tlsPort}`,
        ws: `ws://127.0.0.1:${node.ports.ws[0]}/xmpp-websocket`,
        wss: `wss://127.0.0.1:${node.ports.ws[0]}/xmpp-websocket`,
      };
      const client = xmppClient({
        service: services[login.tls ?? 'starttls'],
        domain,
        timeout: CLIENT_TIMEOUT_MS,
        resource: login.resource,
        credentials: async (authenticate: (c: object, m: string) => Promise<void>, mechanisms: string[]) => {
          const mechanism = login.mechanism ?? 'SCRAM-SHA-1';
          if (!mechanisms.includes(mechanism)) throw new Error(`${mechanism} not offered: ${mechanisms.join(',')}`);
          await authenticate({ username: local, password }, mechanism);
        },
      });
      if (!login.sasl2) withoutSasl2(client);
      mendLibraryRaces(client);
      client.on('error', () => undefined);
      if (login.resumption === false) {
        // A client that enables stream management without resumption: a lost connection ends its session at once.
        const send = client.send.bind(client);
        client.send = (element: Element) => {
          if (element.is('enable', 'urn:xmpp:sm:3')) delete element.attrs.resume;
          return send(element);
        };
      }
      clients.push(client);
      await client.start();
      if (login.presence ?? true) await client.send(xml('presence'));
      return client;
    },
  };
}

/** Resolves with the next stanza the client receives that matches `predicate` (rejects after `ms`). */
export function nextStanza(client: XmppClient, predicate: (stanza: Element) => boolean = () => true, ms = 5000): Promise<Element> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('stanza', onStanza);
      reject(new Error('timed out waiting for a stanza'));
    }, ms);
    const onStanza = (stanza: Element) => {
      if (!predicate(stanza)) return;
      clearTimeout(timer);
      client.off('stanza', onStanza);
      resolve(stanza);
    };
    client.on('stanza', onStanza);
  });
}

/** Collects every stanza a client receives, for asserting what did (not) arrive. */
export function collect(client: XmppClient): Element[] {
  const seen: Element[] = [];
  client.on('stanza', (stanza: Element) => seen.push(stanza));
  return seen;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A raw TCP (or TLS) connection for bad-input tests: write bytes, read what the server says. */
export class RawConnection {
  private received = '';
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (data: string) => {
      this.received += data;
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  /** `localAddress`: the loopback address to connect from (127.0.0.0/8), for tests of per-address limits. */
  static async connect(port: number, secure = false, localAddress?: string): Promise<RawConnection> {
    const socket = secure
      // tls.connect takes socket.connect()'s options as well (Node's documentation); its types leave localAddress out.
      ? tls.connect({ port, host: '127.0.0.1', localAddress, rejectUnauthorized: false } as tls.ConnectionOptions)
      : net.connect({ port, host: '127.0.0.1', localAddress });
    await new Promise<void>((resolve, reject) => {
      socket.once(secure ? 'secureConnect' : 'connect', () => resolve());
      socket.once('error', reject);
    });
    return new RawConnection(socket);
  }

  write(data: string): void {
    this.socket.write(data);
  }

  /** STARTTLS from here (after the server's <proceed/>): a new connection over TLS, presenting `cert` when given. */
  async startTls(cert?: { cert: string; key: string }): Promise<RawConnection> {
    this.socket.removeAllListeners('data');
    const secure = tls.connect({ socket: this.socket, rejectUnauthorized: false, ...(cert ?? {}) });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
    });
    return new RawConnection(secure);
  }

  get text(): string {
    return this.received;
  }

  /** Waits until what was received matches `pattern` (rejects after `ms`). */
  async waitFor(pattern: RegExp, ms = 5000): Promise<string> {
    const deadline = Date.now() + ms;
    while (!pattern.test(this.received)) {
      if (this.closed) throw new Error(`connection closed; received: ${this.received}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${pattern}; received: ${this.received}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.received;
  }

  /** Resolves once the server has closed the connection (rejects after `ms`). */
  async waitClosed(ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('connection still open');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

/**
 * A client spoken by hand: direct TLS on `tlsPort`, SASL PLAIN as `local`, the resource `resource`
 * bound; `after` (e.g. <enable/> and <presence/>) goes out with the binding request. Resolves once
 * the server answered the binding (and `waitFor`, when given, matched).
 */
export async function rawLogin(tlsPort: number, local: string, resource: string, after = '', waitFor?: RegExp): Promise<RawConnection> {
  const conn = await RawConnection.connect(tlsPort, true);
  conn.write(STREAM_OPEN);
  await conn.waitFor(/<\/stream:features>/, 30_000);
  conn.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${local}\0${PASSWORD}`).toString('base64')}</auth>`);
  await conn.waitFor(/<success/, 30_000);
  conn.write(STREAM_OPEN);
  await conn.waitFor(/<bind[^]*<\/stream:features>/, 30_000);
  conn.write(`<iq type='set' id='raw-bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${resource}</resource></bind></iq>${after}`);
  await conn.waitFor(/id=["']raw-bind["']/, 30_000);
  if (waitFor) await conn.waitFor(waitFor, 30_000);
  return conn;
}

/** The opening of a client stream to localhost. */
export const STREAM_OPEN = "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
