import { Element } from 'ltx';
import { StanzaError, StreamError } from './errors';
import { tryParseJID, type JID } from './jid';
import type { Logger } from './log';
import type { Session } from './sm/session';
import type { SessionManager } from './sm/session-manager';
import { LOCAL_ONLY, type RemoteDelivery } from './sm/remote-delivery';
import { NS } from './xml/ns';

/** Where an IQ handler serves: the server itself, or on behalf of a user account (bare JID). */
export type IqTarget = 'host' | 'account';
export type IqType = 'get' | 'set';

export interface IqRequest {
  stanza: Element;
  /** The one child element of the get/set. */
  payload: Element;
  from: JID;
  /** The addressed entity: the host's domain JID, or the account's bare JID. */
  to: JID;
  /** The client session it came from; absent when it came from elsewhere (cluster, component). */
  session?: Session;
  /** The sender is the addressed account itself (to absent or its own bare JID). */
  self: boolean;
}

/** A disco node of the server: each answers with the `<query/>` (XEP-0030), or throws a StanzaError. */
export interface DiscoNode {
  info?(req: IqRequest): Element | Promise<Element>;
  items?(req: IqRequest): Element | Promise<Element>;
}

/** An IQ handler's return value is the reply: a payload element, or null for an empty result. */
export type IqHandler = (req: IqRequest) => Element | null | Promise<Element | null>;

/**
 * A stanza addressed to a local user, on its way in: may stop it (drop: 'drop'; bounce: a
 * StanzaError). Runs before delivery, for every stanza kind.
 */
export type InboundFilter = (stanza: Element, from: JID, to: JID) => undefined | 'drop' | StanzaError | Promise<undefined | 'drop' | StanzaError>;
/** A stanza from a local client, on its way out, checked before it is routed. */
export type OutboundFilter = (session: Session, stanza: Element, to: JID | undefined) => undefined | 'drop' | StanzaError | Promise<undefined | 'drop' | StanzaError>;

/** RFC 6121 delivery of messages and presence; implemented by the session manager's services. */
export interface StanzaDelivery {
  outboundMessage(session: Session, stanza: Element, to: JID): Promise<void> | void;
  inboundMessage(stanza: Element, from: JID, to: JID): Promise<void> | void;
  outboundPresence(session: Session, stanza: Element, to: JID | undefined): Promise<void> | void;
  inboundPresence(stanza: Element, from: JID, to: JID): Promise<void> | void;
}

/** A component (MUC, PubSub) takes every stanza addressed to its domain. */
export type DomainHandler = (stanza: Element, from: JID, to: JID) => Promise<void> | void;

export interface DiscoIdentity { category: string; type: string; name?: string }

const MESSAGE_TYPES = new Set(['chat', 'error', 'groupchat', 'headline', 'normal']);
const PRESENCE_TYPES = new Set(['unavailable', 'subscribe', 'subscribed', 'unsubscribe', 'unsubscribed', 'probe', 'error']);

/**
 * The one place that decides where a stanza goes (DESIGN: router). It validates what clients
 * send (RFC 6120 §8), stamps `from`, dispatches IQs to typed handlers, hands messages and
 * presence to RFC 6121 delivery, and builds every error reply. It never answers an error or a
 * result with an error (RFC 6120 §8.3.1).
 */
export class Router {
  private readonly iqHandlers = new Map<string, IqHandler>();
  private readonly features: Record<IqTarget, Set<string>> = { host: new Set(), account: new Set() };
  private readonly identities: Record<IqTarget, DiscoIdentity[]> = { host: [], account: [] };
  private readonly discoNodes = new Map<string, DiscoNode>();
  private readonly domains = new Map<string, DomainHandler>();
  private readonly inboundFilters: InboundFilter[] = [];
  private readonly outboundFilters: OutboundFilter[] = [];
  /** Who waits for IQ results and errors addressed to the server or an account (answers to the server's own requests). */
  private readonly resultListeners: ((stanza: Element, from: JID) => boolean)[] = [];
  private delivery?: StanzaDelivery;
  private remote: RemoteDelivery = LOCAL_ONLY;
  /** Server-to-server: where stanzas for domains that are neither ours nor our components' go. */
  private federation?: (stanza: Element, from: JID, to: JID) => void;
  private accountExists: (bare: string) => Promise<boolean> = async () => true;

  constructor(
    readonly hosts: ReadonlySet<string>,
    private readonly sessions: SessionManager,
    private readonly logger: Logger,
  ) {}

  // ---- registration (modules call these at start-up) ----

  iq(type: IqType, target: IqTarget, xmlns: string, name: string, handler: IqHandler): void {
    const key = iqKey(type, target, xmlns, name);
    if (this.iqHandlers.has(key)) throw new Error(`IQ route registered twice: ${key}`);
    this.iqHandlers.set(key, handler);
  }

  /** Advertises a disco#info feature of the server ('host') or of every account ('account'). */
  feature(target: IqTarget, namespace: string): void {
    this.features[target].add(namespace);
  }

  identity(target: IqTarget, identity: DiscoIdentity): void {
    this.identities[target].push(identity);
  }

  discoFeatures(target: IqTarget): string[] {
    return [...this.features[target]].sort();
  }

  discoIdentities(target: IqTarget): DiscoIdentity[] {
    return this.identities[target];
  }

  /** Answers disco#info and disco#items queries to the server at `node` (XEP-0030 §3.2, §4.2). */
  discoNode(node: string, handlers: DiscoNode): void {
    if (this.discoNodes.has(node)) throw new Error(`disco node registered twice: ${node}`);
    this.discoNodes.set(node, handlers);
  }

  /** The handlers of a server disco node, if any module registered it. */
  discoNodeOf(node: string): DiscoNode | undefined {
    return this.discoNodes.get(node);
  }

  addInboundFilter(filter: InboundFilter): void {
    this.inboundFilters.push(filter);
  }

  addOutboundFilter(filter: OutboundFilter): void {
    this.outboundFilters.push(filter);
  }

  /** `listener` sees each IQ result or error to the server or an account, and returns true for one it was waiting for. */
  onResult(listener: (stanza: Element, from: JID) => boolean): void {
    this.resultListeners.push(listener);
  }

  /** True when an IQ result or error is the answer to one of the server's own requests (and was taken). */
  claimResult(stanza: Element, from: JID): boolean {
    if (stanza.name !== 'iq' || (stanza.attrs.type !== 'result' && stanza.attrs.type !== 'error')) return false;
    return this.resultListeners.some((listener) => listener(stanza, from));
  }

  setDelivery(delivery: StanzaDelivery): void {
    this.delivery = delivery;
  }

  /** How the router tells a missing account from one that is merely offline. */
  setAccountCheck(check: (bare: string) => Promise<boolean>): void {
    this.accountExists = check;
  }

  /** The other nodes of the cluster, for IQs to resources bound elsewhere. */
  setRemote(remote: RemoteDelivery): void {
    this.remote = remote;
  }

  /** Federation (server-to-server): stanzas for other domains leave through it. */
  setFederation(send: (stanza: Element, from: JID, to: JID) => void): void {
    this.federation = send;
  }

  /** Whether a stanza for `domain` can go anywhere: ours, our components', or (with federation) any other. */
  reaches(domain: string): boolean {
    return this.hosts.has(domain) || this.domains.has(domain) || this.federation !== undefined;
  }

  /** Ours or one of our components'. */
  serves(domain: string): boolean {
    return this.hosts.has(domain) || this.domains.has(domain);
  }

  /** Routes every stanza for `domain` (a component's subdomain) to `handler`. */
  addDomain(domain: string, handler: DomainHandler): void {
    this.domains.set(domain, handler);
  }

  componentDomains(): string[] {
    return [...this.domains.keys()].sort();
  }

  // ---- from a bound client ----

  /**
   * A stanza from a bound client session. Throws StreamError for violations that end the
   * stream (RFC 6120 §8.1.2.1: a `from` that is not the client's JID is `invalid-from`).
   */
  async fromClient(session: Session, stanza: Element): Promise<void> {
    const fromAttr = stanza.attrs.from;
    if (fromAttr !== undefined && fromAttr !== session.full && fromAttr !== session.bare) {
      const claimed = tryParseJID(fromAttr);
      if (!claimed || !(claimed.equals(session.jid) || claimed.equals(session.jid.bare()))) {
        throw new StreamError('invalid-from', 'from does not match the authenticated JID');
      }
    }
    // RFC 6120 §8.1.2.1: the server stamps the full JID of the sender.
    stanza.attrs.from = session.full;
    delete stanza.attrs.xmlns;

    try {
      const to = this.validate(stanza);
      for (const filter of this.outboundFilters) {
        const verdict = await filter(session, stanza, to);
        if (verdict === 'drop') return;
        if (verdict) throw verdict;
      }
      switch (stanza.name) {
        case 'message':
          await this.deliveryOrFail().outboundMessage(session, stanza, to ?? session.jid.bare());
          return;
        case 'presence':
          await this.deliveryOrFail().outboundPresence(session, stanza, to);
          return;
        default:
          await this.routeIq(stanza, session.jid, to, session);
      }
    } catch (err) {
      this.replyError(stanza, err, session);
    }
  }

  /**
   * RFC 6120 §8 checks on a client's stanza. Returns the parsed `to` (undefined when absent);
   * throws StanzaError for a stanza that gets an error reply.
   */
  private validate(stanza: Element): JID | undefined {
    const { type, to: toAttr } = stanza.attrs;
    switch (stanza.name) {
      case 'message':
        if (type !== undefined && !MESSAGE_TYPES.has(type)) throw new StanzaError('bad-request', `unknown message type '${type}'`);
        break;
      case 'presence':
        if (type !== undefined && !PRESENCE_TYPES.has(type)) throw new StanzaError('bad-request', `unknown presence type '${type}'`);
        break;
      case 'iq': {
        // RFC 6120 §8.2.3: id REQUIRED; get/set exactly one child; result zero or one.
        if (!stanza.attrs.id) throw new StanzaError('bad-request', 'IQ without id');
        const children = stanza.getChildElements().length;
        if (type === 'get' || type === 'set') {
          if (children !== 1) throw new StanzaError('bad-request', 'IQ get/set must contain exactly one child element');
        } else if (type === 'result') {
          if (children > 1) throw new StanzaError('bad-request', 'IQ result must contain at most one child element');
        } else if (type !== 'error') {
          throw new StanzaError('bad-request', `unknown IQ type '${type}'`);
        }
        break;
      }
      default:
        throw new StreamError('unsupported-stanza-type', `<${stanza.name}/> is not a stanza`);
    }
    if (toAttr === undefined) return undefined;
    const to = tryParseJID(toAttr);
    if (!to) throw new StanzaError('jid-malformed', 'the to address is not a valid JID');
    return to;
  }

  // ---- routing to an address (inbound side; used by client stanzas, modules, cluster, components) ----

  /**
   * Delivers a stanza whose `from` is already trusted to its `to` (RFC 6120 §10): a local user,
   * a local host, a component, or (no server-to-server yet) an error.
   */
  async route(stanza: Element, from: JID, to: JID): Promise<void> {
    try {
      if (stanza.name === 'iq') return await this.routeIq(stanza, from, to, undefined);
      const domainHandler = this.domains.get(to.domain);
      if (domainHandler) return await domainHandler(stanza, from, to);
      if (!this.hosts.has(to.domain)) return this.toRemoteDomain(stanza, from, to);
      if (to.local === '') return; // messages and presence to the server itself: nothing to do
      if (!(await this.passInbound(stanza, from, to))) return;
      if (stanza.name === 'message') await this.deliveryOrFail().inboundMessage(stanza, from, to);
      else await this.deliveryOrFail().inboundPresence(stanza, from, to);
    } catch (err) {
      this.replyError(stanza, err);
    }
  }

  /**
   * A stanza for another server's domain: out through federation. Only our own users' (and
   * services') stanzas leave: a remote server's stanza for a third domain is not relayed.
   */
  private toRemoteDomain(stanza: Element, from: JID, to: JID): void {
    if (!this.federation) throw new StanzaError('remote-server-not-found', `no route to ${to.domain}`);
    if (!this.serves(from.domain)) throw new StanzaError('not-allowed', 'stanzas between other servers are not relayed');
    this.federation(stanza, from, to);
  }

  private async routeIq(stanza: Element, from: JID, to: JID | undefined, session: Session | undefined): Promise<void> {
    const type = stanza.attrs.type as string;
    if (to) {
      const domainHandler = this.domains.get(to.domain);
      if (domainHandler) return domainHandler(stanza, from, to);
      if (!this.hosts.has(to.domain)) return this.toRemoteDomain(stanza, from, to);
    }
    const requestsAccount = to === undefined || (to.local !== '' && to.resource === '');
    if (to && to.resource !== '' && to.local !== '') {
      // To a full JID: the resource answers, not the server (RFC 6121 §8.5.3); an answer to a
      // request the server sent from that resource's JID (remote caps) is the server's.
      if (this.claimResult(stanza, from)) return;
      if (!(await this.passInbound(stanza, from, to))) return;
      const target = this.sessions.get(to);
      if (target) {
        target.send(stanza);
        return;
      }
      if (!this.remote.clustered) {
        if (type === 'get' || type === 'set') throw new StanzaError('service-unavailable');
        return;
      }
      // Elsewhere in the cluster (results come back to the node that asked, wherever that is). The
      // answer is awaited off the sender's stream so its next stanzas do not wait for the round trip.
      void this.remote.stanzaToResource(stanza, to).then((delivered) => {
        if (!delivered && (type === 'get' || type === 'set')) this.replyError(stanza, new StanzaError('service-unavailable'), session);
      });
      return;
    }
    if (type !== 'get' && type !== 'set') {
      // Results and errors to the server or an account: an answer to the server's own request, or consumed.
      this.claimResult(stanza, from);
      return;
    }
    if (to && !(await this.passInbound(stanza, from, to))) return;

    const payload = stanza.getChildElements()[0];
    const xmlns = payload.attrs.xmlns as string;
    let target: IqTarget = requestsAccount ? 'account' : 'host';
    let handler = this.iqHandlers.get(iqKey(type, target, xmlns, payload.name));
    // RFC 6120 §10.3.3: no 'to' means the account itself; fall back to the server's handler
    // (a ping or disco without 'to' is usually meant for the server).
    if (!handler && to === undefined) {
      target = 'host';
      handler = this.iqHandlers.get(iqKey(type, target, xmlns, payload.name));
    }
    if (!handler) throw new StanzaError('service-unavailable');
    const addressed = to ?? (target === 'account' ? from.bare() : hostJID(from.domain));
    const self = target === 'account' && addressed.bareString() === from.bareString();
    // RFC 6121 §8.5.1: an IQ to an account that does not exist gets service-unavailable, whatever the namespace.
    if (target === 'account' && !self && !this.sessions.hasSessions(addressed.bareString()) && !(await this.accountExists(addressed.bareString()))) {
      throw new StanzaError('service-unavailable');
    }
    const reply = await handler({ stanza, payload, from, to: addressed, session, self });
    const result = new Element('iq', { type: 'result', id: stanza.attrs.id, to: stanza.attrs.from });
    if (stanza.attrs.to) result.attrs.from = stanza.attrs.to;
    if (reply) result.cnode(reply);
    this.sendTo(result, from);
  }

  /**
   * The inbound filters (e.g. blocking) for a stanza on its way to a local user: false when it is
   * to be dropped; throws the StanzaError it is to be bounced with. Also run by the node that
   * delivers presence forwarded from another node, where the recipient's state is.
   */
  async passInbound(stanza: Element, from: JID, to: JID): Promise<boolean> {
    for (const filter of this.inboundFilters) {
      const verdict = await filter(stanza, from, to);
      if (verdict === 'drop') return false;
      if (verdict) throw verdict;
    }
    return true;
  }

  // ---- replies ----

  /**
   * Sends a server-generated stanza to a local entity: a session when `to` is a bound full JID,
   * otherwise through route(). Used for replies and pushes.
   */
  sendTo(stanza: Element, to: JID): void {
    if (to.resource) {
      const session = this.sessions.get(to);
      if (session) {
        session.send(stanza);
        return;
      }
    }
    const from = stanza.attrs.from ? tryParseJID(stanza.attrs.from) : undefined;
    void this.route(stanza, from ?? hostJID(to.domain), to);
  }

  /**
   * Answers `stanza` with an error (RFC 6120 §8.3): from and to swapped, the original payload
   * kept. Errors and results are never answered. A non-StanzaError is a bug: logged, answered
   * with internal-server-error. A StreamError is rethrown for the stream to handle.
   */
  replyError(stanza: Element, err: unknown, session?: Session): void {
    if (err instanceof StreamError) throw err;
    const error = err instanceof StanzaError ? err : new StanzaError('internal-server-error');
    if (!(err instanceof StanzaError)) {
      this.logger.error('stanza handler failed', { conn: session?.id, err: String((err as Error)?.stack ?? err), stanza: stanza.toString().slice(0, 500) });
    }
    const type = stanza.attrs.type;
    if (type === 'error' || type === 'result') return;
    const reply = new Element(stanza.name, { type: 'error' });
    if (stanza.attrs.id !== undefined) reply.attrs.id = stanza.attrs.id;
    const sender = stanza.attrs.from ? tryParseJID(stanza.attrs.from) : undefined;
    if (!sender) return;
    reply.attrs.to = stanza.attrs.from;
    if (stanza.attrs.to) reply.attrs.from = stanza.attrs.to;
    for (const child of stanza.children) {
      if (typeof child !== 'string' && child.name !== 'error') reply.cnode(cloneElement(child));
    }
    reply.cnode(error.toElement());
    if (session && sender.equals(session.jid)) session.send(reply);
    else this.sendTo(reply, sender);
  }

  private deliveryOrFail(): StanzaDelivery {
    if (!this.delivery) throw new Error('no stanza delivery configured');
    return this.delivery;
  }
}

function iqKey(type: IqType, target: IqTarget, xmlns: string, name: string): string {
  return `${type} ${target} ${xmlns} ${name}`;
}

const hostJIDs = new Map<string, JID>();
/** The JID of a served domain (cached: server replies use it on every IQ). */
export function hostJID(domain: string): JID {
  let jid = hostJIDs.get(domain);
  if (!jid) {
    jid = tryParseJID(domain);
    if (!jid) throw new Error(`not a domain: ${domain}`);
    hostJIDs.set(domain, jid);
  }
  return jid;
}

/** A deep copy (ltx's clone keeps parent links we do not want). */
export function cloneElement(element: Element): Element {
  const copy = new Element(element.name, { ...element.attrs });
  for (const child of element.children) copy.children.push(typeof child === 'string' ? child : cloneElement(child));
  for (const child of copy.children) if (typeof child !== 'string') child.parent = copy;
  return copy;
}

export { NS };
