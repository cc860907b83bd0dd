import { promises as dns } from 'node:dns';
import net from 'node:net';
import tls from 'node:tls';
import type { Element } from 'ltx';
import { StanzaError } from '../errors';
import type { JID } from '../jid';
import type { Logger } from '../log';
import { cloneElement } from '../router';
import { AddressLimits } from '../transports/address-limits';
import { listenTcp, TcpTransport, trustedCas } from '../transports/tcp';
import { NS } from '../xml/ns';
import type { ParserLimits } from '../xml/stream-parser';
import { DialbackKeys } from './dialback';
import { IncomingStream } from './incoming';
import { OutgoingFailure, OutgoingStream, type PeerAddress, type S2SAuth } from './outgoing';

/** Stanzas held for a remote domain while its stream is being set up, at most [10000]; beyond, resource-constraint. */
const MAX_QUEUED = 10_000;
/** Default port of a remote server without SRV records (RFC 6120 §3.2.2) [5269]. */
const DEFAULT_S2S_PORT = 5269;
/** DNS: milliseconds per query attempt [5000] and attempts per server [2]. */
const DNS_TIMEOUT_MS = 5000;
const DNS_TRIES = 2;

export interface FederationOptions {
  /** Domains this node answers for on s2s: its hosts and their components' subdomains. */
  serves(domain: string): boolean;
  ports: number[];
  sslPorts: number[];
  bindAddress: string;
  /** The dialback secret every node of the cluster shares (--s2s-secret). */
  secret: string;
  /** --s2s-static-routes: domain -> where its server listens, instead of DNS. */
  staticRoutes: ReadonlyMap<string, PeerAddress>;
  tlsRequired: boolean;
  verifyCerts: boolean;
  /** Seconds to get a stream to a remote domain authenticated before its stanzas bounce (--s2s-timeout). */
  timeout: number;
  /** Seconds an incoming stream has to authenticate a domain (--auth-timeout). */
  authTimeout: number;
  limits: ParserLimits;
  /** New incoming connections a second per address, and open at once (--s2s-connection-rate-per-ip ...). */
  addressLimits: { maxPerAddress: number; maxWaitingPerAddress: number; ratePerSecond: number };
  exempt: readonly string[];
  /** Our certificate (the object is updated in place when SIGHUP reloads it). */
  certificate: { cert: string; key: string };
  /** PEM certificates of CAs trusted for peers' certificates beyond the system's (--s2s-ca-file). */
  ca: readonly string[];
  /** Name servers for SRV and address lookups (--dns-servers, "ip" or "ip:port"); empty: the system's. */
  dnsServers: readonly string[];
  defaultDomain: string;
  logger: Logger;
  /** A stanza from a remote domain for one of ours: into the router. */
  deliver(stanza: Element, from: JID, to: JID): void;
  /** A stanza that cannot reach its remote domain: the error goes back to its sender. */
  bounce(stanza: Element, error: StanzaError): void;
}

/** Server-to-server streams as /status shows them. */
export interface FederationStatus {
  outgoing: { local: string; remote: string; state: string; queued: number; auth?: S2SAuth }[];
  incoming: { remote: string; address: string; auth: S2SAuth }[];
  counters: { bounced: number; sent: number; received: number };
}

interface Route {
  stream?: OutgoingStream;
  queue: Element[];
}

/**
 * Server-to-server (RFC 6120 with jabber:server, XEP-0220 dialback keys per XEP-0185). Every node
 * listens on --s2s-ports and accepts streams for any served domain; stanzas it receives go into
 * the router like any other, so they reach users on whichever node they are. Each node keeps its
 * own outgoing stream per remote domain (local domain, remote domain), opened on the first stanza
 * and reused: no cross-node hop on the way out, and a node that dies takes only its own streams.
 */
export class Federation {
  private readonly keys: DialbackKeys;
  private readonly routes = new Map<string, Route>();
  private readonly incoming = new Set<IncomingStream>();
  private readonly servers: net.Server[] = [];
  private readonly limits: AddressLimits;
  private nextId = 0;
  private stopped = false;
  private readonly resolver = new dns.Resolver({ timeout: DNS_TIMEOUT_MS, tries: DNS_TRIES });
  private context?: { cert: string; context: tls.SecureContext };
  readonly counters = { bounced: 0, sent: 0, received: 0 };

  constructor(private readonly opts: FederationOptions) {
    this.keys = new DialbackKeys(opts.secret);
    this.limits = new AddressLimits(() => opts.addressLimits, opts.exempt);
    if (opts.dnsServers.length > 0) this.resolver.setServers([...opts.dnsServers]);
  }

  /** Our certificate with the CAs we trust for peers' (asked for in every s2s handshake); rebuilt when SIGHUP changed the certificate. */
  private secureContext(): tls.SecureContext {
    const { cert, key } = this.opts.certificate;
    if (this.context?.cert !== cert) {
      this.context = { cert, context: tls.createSecureContext({ cert, key, minVersion: 'TLSv1.2', ...(this.opts.ca.length > 0 ? { ca: trustedCas(this.opts.ca) } : {}) }) };
    }
    return this.context.context;
  }

  /** Opens the listeners; resolves with the ports they listen on. */
  async start(): Promise<{ s2s: number[]; s2sTls: number[] }> {
    const ports = { s2s: [] as number[], s2sTls: [] as number[] };
    for (const [list, directTls] of [[this.opts.ports, false], [this.opts.sslPorts, true]] as const) {
      for (const port of list) {
        const server = await this.listen(port, directTls);
        this.servers.push(server);
        (directTls ? ports.s2sTls : ports.s2s).push((server.address() as net.AddressInfo).port);
      }
    }
    return ports;
  }

  /**
   * A stanza from one of our domains to a remote one. It leaves with the addresses the router
   * decided (`from` is the bare JID for subscriptions, RFC 6121 §3.1.2), on a copy of its own.
   */
  send(original: Element, from: JID, to: JID): void {
    const stanza = cloneElement(original);
    stanza.attrs.from = from.toString();
    stanza.attrs.to = to.toString();
    if (this.opts.logger.debugEnabled) this.opts.logger.debug('s2s out', { stanza: stanza.toString().slice(0, 300) });
    if (this.stopped) return this.bounce(stanza, new StanzaError('remote-server-timeout', 'this node is stopping'));
    const key = `${from.domain}\0${to.domain}`;
    let route = this.routes.get(key);
    if (route?.stream?.ready) {
      route.stream.send(stanza);
      this.counters.sent++;
      return;
    }
    if (!route) {
      route = { queue: [] };
      this.routes.set(key, route);
      void this.connect(key, route, from.domain, to.domain);
    }
    if (route.queue.length >= MAX_QUEUED) return this.bounce(stanza, new StanzaError('resource-constraint', `too many stanzas waiting for ${to.domain}`));
    route.queue.push(stanza);
  }

  /** The streams, for /status: outgoing per remote domain, incoming per authenticated remote domain. */
  status(): FederationStatus {
    return {
      outgoing: [...this.routes].map(([key, route]) => {
        const [local, remote] = key.split('\0');
        return { local, remote, state: route.stream?.ready ? 'ready' : 'connecting', queued: route.queue.length, ...(route.stream?.method ? { auth: route.stream.method } : {}) };
      }),
      incoming: [...this.incoming].flatMap((stream) => stream.remotes.map((remote) => ({ remote, address: stream.remoteAddress, auth: stream.methodOf(remote) }))),
      counters: { ...this.counters },
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.limits.stop();
    for (const server of this.servers) server.close();
    for (const stream of this.incoming) stream.close();
    for (const route of this.routes.values()) {
      route.stream?.close();
      for (const stanza of route.queue.splice(0)) this.bounce(stanza, new StanzaError('remote-server-timeout', 'this node is stopping'));
    }
    this.routes.clear();
  }

  private bounce(stanza: Element, error: StanzaError): void {
    this.counters.bounced++;
    this.opts.bounce(stanza, error);
  }

  // ---- outgoing ----

  private async connect(key: string, route: Route, local: string, remote: string): Promise<void> {
    try {
      const stream = new OutgoingStream({ ...this.streamOptions(local, remote), addresses: await this.resolve(remote) });
      route.stream = stream;
      await stream.authenticate();
      stream.onClose = (reason) => {
        if (this.routes.get(key) === route) this.routes.delete(key);
        this.opts.logger.info('s2s outgoing stream closed', { local, remote, reason });
      };
      const queued = route.queue.splice(0);
      for (const stanza of queued) stream.send(stanza);
      this.counters.sent += queued.length;
    } catch (err) {
      if (this.routes.get(key) === route) this.routes.delete(key);
      const failure = err instanceof OutgoingFailure ? err : new OutgoingFailure('remote-server-not-found', String((err as Error)?.message ?? err));
      this.opts.logger.warn('s2s: cannot reach a remote domain; its stanzas bounce', { local, remote, condition: failure.condition, reason: failure.message, bounced: route.queue.length });
      for (const stanza of route.queue.splice(0)) this.bounce(stanza, new StanzaError(failure.condition, failure.message));
    }
  }

  /** RFC 6120 §3.2 and XEP-0368: a static route, else SRV records (direct TLS first), else the domain itself on 5269. */
  private async resolve(remote: string): Promise<PeerAddress[]> {
    const fixed = this.opts.staticRoutes.get(remote);
    if (fixed) return [fixed];
    // An IP-literal domain (RFC 7622 §3.2.1) is its own address: no DNS.
    const literal = remote.replace(/^\[(.*)\]$/, '$1');
    if (net.isIP(literal) !== 0) return [{ host: literal, port: DEFAULT_S2S_PORT, directTls: false }];
    const srv = async (service: string, directTls: boolean): Promise<PeerAddress[]> => {
      try {
        const records = await this.resolver.resolveSrv(`${service}.${remote}`);
        // "." as the target: the service is decidedly not available (RFC 2782).
        return records
          .filter((r) => r.name !== '.' && r.name !== '')
          .sort((a, b) => a.priority - b.priority || b.weight - a.weight)
          .map((r) => ({ host: r.name, port: r.port, directTls }));
      } catch {
        return [];
      }
    };
    const found = [...(await srv('_xmpps-server._tcp', true)), ...(await srv('_xmpp-server._tcp', false))];
    const targets = found.length > 0 ? found : [{ host: remote, port: DEFAULT_S2S_PORT, directTls: false }];
    return this.opts.dnsServers.length > 0 ? (await Promise.all(targets.map((t) => this.addressesOf(t)))).flat() : targets;
  }

  /** With --dns-servers, a target's addresses come from them too (IPv6 first, as RFC 6724 prefers), not from the system's lookup. */
  private async addressesOf(target: PeerAddress): Promise<PeerAddress[]> {
    if (net.isIP(target.host) !== 0) return [target];
    const [v6, v4] = await Promise.all([this.resolver.resolve6(target.host).catch(() => []), this.resolver.resolve4(target.host).catch(() => [])]);
    return [...v6, ...v4].map((host) => ({ ...target, host }));
  }

  private streamOptions(local: string, remote: string) {
    return {
      local,
      remote,
      keys: this.keys,
      tlsRequired: this.opts.tlsRequired,
      verifyCerts: this.opts.verifyCerts,
      certificate: this.opts.certificate,
      ca: this.opts.ca.length > 0 ? this.opts.ca : undefined,
      limits: this.opts.limits,
      logger: this.opts.logger,
      timeout: this.opts.timeout * 1000,
    };
  }

  // ---- incoming ----

  private listen(port: number, directTls: boolean): Promise<net.Server> {
    return listenTcp({
      port,
      host: this.opts.bindAddress,
      directTls,
      secureContext: () => this.secureContext(),
      certificate: this.opts.certificate,
      requestCert: true,
      ca: this.opts.ca.length > 0 ? this.opts.ca : undefined,
      limits: this.opts.limits,
      defaultDomain: this.opts.defaultDomain,
      logger: this.opts.logger,
      nextId: () => `s2s-in-${++this.nextId}`,
      addressLimits: this.limits,
      contentNamespace: NS.SERVER,
      alpn: 'xmpp-server',
      onConnection: (transport: TcpTransport) => {
        const stream = new IncomingStream(transport, {
          serves: (domain) => this.opts.serves(domain),
          keys: this.keys,
          tlsRequired: this.opts.tlsRequired,
          verifyCerts: this.opts.verifyCerts,
          authTimeout: this.opts.authTimeout,
          // A stream of its own per key to check (XEP-0220 allows it, and it keeps the routes simple).
          verifyKey: async (receiving, originating, id, key) =>
            new OutgoingStream({ ...this.streamOptions(receiving, originating), addresses: await this.resolve(originating) }).verify(id, key),
          deliver: (stanza, from, to) => {
            this.counters.received++;
            if (this.opts.logger.debugEnabled) this.opts.logger.debug('s2s in', { stanza: stanza.toString().slice(0, 300) });
            this.opts.deliver(stanza, from, to);
          },
          // A peer that authenticated no longer counts as waiting against the per-address limits.
          authorised: () => transport.authenticated?.(),
          ended: (s) => this.incoming.delete(s),
          logger: this.opts.logger,
        });
        this.incoming.add(stream);
        transport.attach(stream);
      },
    });
  }
}
