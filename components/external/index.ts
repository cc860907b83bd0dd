import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { Element } from 'ltx';
import type { Transport, TransportListener } from '../../server/c2s/transport';
import { StanzaError, StreamError } from '../../server/errors';
import { tryParseJID, type JID } from '../../server/jid';
import type { Logger } from '../../server/log';
import type { Component, ComponentContext } from '../component';

/** The namespace of an external component's stream (XEP-0114). */
export const COMPONENT_ACCEPT = 'jabber:component:accept';

/** What the --external-ports listener needs from an external component: its domains and its connections. */
export interface ExternalEndpoint {
  serves(domain: string): boolean;
  /** The shared secret (--comp-secret-N). */
  readonly secret: string;
  /** Resolves once the connection is where stanzas for `domain` go, on every node. */
  connected(domain: string, stream: ComponentStream): Promise<void>;
  disconnected(domain: string, stream: ComponentStream): void;
  /** A stanza the component sent (its `from` checked to be at its domain). */
  fromComponent(stanza: Element, from: JID, to: JID): void;
  readonly logger: Logger;
}

/**
 * XEP-0114 external components (a bridge or a bot at <name>.<vhost>): it connects to any node on
 * --external-ports and proves the shared secret; stanzas for its domain from users on every node go
 * to the node holding its connection (claimed in the database, like a room's owner), and what it
 * sends is routed like a user's. A new connection takes over from an old one, on this node or any.
 */
class ExternalComponent implements Component, ExternalEndpoint {
  readonly secret: string;
  readonly logger: Logger;
  private readonly connections = new Map<string, ComponentStream>();

  constructor(private readonly ctx: ComponentContext) {
    const spec = ctx.config.components.find((c) => c.name === ctx.name);
    this.secret = spec?.secret ?? '';
    this.logger = ctx.logger;
    // Another node took the component's connection over: the one here is stale.
    ctx.cluster?.onMoved((domain, _from, to) => {
      if (to !== ctx.cluster!.localNode) this.connections.get(domain)?.close(new StreamError('conflict', 'the component connected again elsewhere'));
    });
  }

  serves(domain: string): boolean {
    return this.ctx.domains.includes(domain);
  }

  async handle(stanza: Element, from: JID, to: JID, forwardedBy?: string): Promise<void> {
    try {
      const local = this.connections.get(to.domain);
      if (local) return local.send(stanza, from, to);
      const cluster = this.ctx.cluster;
      const owner = cluster && forwardedBy === undefined ? await cluster.claimedBy(to.domain) : undefined;
      if (cluster && owner && owner !== cluster.localNode && cluster.forward(owner, stanza, from, to)) return;
      throw new StanzaError('service-unavailable', `${to.domain} is not connected`);
    } catch (err) {
      this.ctx.router.replyError(stanza, err);
    }
  }

  async connected(domain: string, stream: ComponentStream): Promise<void> {
    const previous = this.connections.get(domain);
    this.connections.set(domain, stream);
    previous?.close(new StreamError('conflict', 'the component connected again'));
    this.ctx.logger.info('external component connected', { domain, address: stream.remoteAddress });
    await this.ctx.cluster?.claim(domain).catch((err) => this.ctx.logger.error('external component not claimed in the database: other nodes cannot reach it', { domain, err: String(err) }));
  }

  disconnected(domain: string, stream: ComponentStream): void {
    if (this.connections.get(domain) !== stream) return;
    this.connections.delete(domain);
    this.ctx.logger.info('external component disconnected', { domain });
    void this.ctx.cluster?.release(domain).catch(() => undefined);
  }

  fromComponent(stanza: Element, from: JID, to: JID): void {
    void this.ctx.router.route(stanza, from, to);
  }

  async stop(): Promise<void> {
    for (const stream of [...this.connections.values()]) stream.close(new StreamError('system-shutdown'));
  }
}

export function createExternal(ctx: ComponentContext): Component & ExternalEndpoint {
  return new ExternalComponent(ctx);
}

/**
 * One external component's stream (XEP-0114 §3): the component opens a jabber:component:accept
 * stream to its domain, we answer with a stream id, it sends <handshake/> with SHA-1(id + secret)
 * in hex; after that, stanzas flow both ways. A `from` outside its domain is `invalid-from`.
 */
export class ComponentStream implements TransportListener {
  private readonly id = randomBytes(12).toString('hex');
  private domain?: string;
  private endpoint?: ExternalEndpoint;
  private ready = false;
  private finished = false;

  constructor(private readonly transport: Transport, private readonly find: (domain: string) => ExternalEndpoint | undefined, private readonly logger: Logger) {}

  get remoteAddress(): string {
    return this.transport.remoteAddress;
  }

  streamStart(attrs: Record<string, string>): void {
    const domain = (attrs.to ?? '').toLowerCase();
    this.transport.sendHeader({ from: domain, id: this.id });
    const endpoint = this.find(domain);
    if (!endpoint) return this.close(new StreamError('host-unknown', `no external component is configured for ${domain || 'this stream'}`));
    this.domain = domain;
    this.endpoint = endpoint;
  }

  element(element: Element): void {
    try {
      if (!this.endpoint || !this.domain) throw new StreamError('not-authorized', 'open a stream to the component\'s domain first');
      if (!this.ready) {
        if (element.name !== 'handshake') throw new StreamError('not-authorized', 'handshake first');
        const expected = Buffer.from(createHash('sha1').update(this.id + this.endpoint.secret).digest('hex'));
        const given = Buffer.from(element.getText().trim().toLowerCase());
        if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
          this.endpoint.logger.warn('external component refused: wrong secret', { domain: this.domain, address: this.transport.remoteAddress });
          throw new StreamError('not-authorized', 'wrong handshake');
        }
        this.ready = true;
        this.transport.authenticated?.();
        // The handshake is answered once stanzas for the domain come here from every node.
        const domain = this.domain;
        void this.endpoint.connected(domain, this).then(() => {
          if (!this.finished) this.transport.send(new Element('handshake'));
        });
        return;
      }
      if (!['message', 'presence', 'iq'].includes(element.name)) throw new StreamError('unsupported-stanza-type', `<${element.name}/> is not a stanza`);
      const from = tryParseJID(element.attrs.from ?? '');
      const to = tryParseJID(element.attrs.to ?? '');
      if (!from || (from.domain !== this.domain && !from.domain.endsWith(`.${this.domain}`))) {
        throw new StreamError('invalid-from', `a component sends from ${this.domain} only`);
      }
      if (!to) throw new StreamError('improper-addressing', 'a stanza needs a valid to');
      delete element.attrs.xmlns;
      this.endpoint.fromComponent(element, from, to);
    } catch (err) {
      this.close(err instanceof StreamError ? err : new StreamError('internal-server-error'));
    }
  }

  /** A stanza for the component, with the addresses the router decided. */
  send(stanza: Element, from: JID, to: JID): void {
    if (!this.ready || this.finished) throw new StanzaError('service-unavailable', `${to.domain} is not connected`);
    stanza.attrs.from = from.toString();
    stanza.attrs.to = to.toString();
    this.transport.send(stanza);
  }

  streamEnd(): void {
    this.close();
  }

  streamError(error: StreamError): void {
    this.close(error);
  }

  close(error?: StreamError): void {
    if (this.finished) return;
    this.finished = true;
    this.transport.close(error);
    this.ended();
  }

  /** The connection is gone (TransportListener). */
  closed(reason: string): void {
    this.logger.debug('external component connection closed', { domain: this.domain, reason });
    this.finished = true;
    this.ended();
  }

  private ended(): void {
    if (this.ready && this.domain) this.endpoint?.disconnected(this.domain, this);
    this.ready = false;
  }
}
