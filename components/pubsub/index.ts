import { Element } from 'ltx';
import { StanzaError } from '../../server/errors';
import { tryParseJID, type JID } from '../../server/jid';
import { cloneElement, hostJID } from '../../server/router';
import { NS } from '../../server/xml/ns';
import type { Component, ComponentContext } from '../component';
import { discoInfo, discoItems, isDisco } from './disco';
import { BASE_NODE_CONFIG, type NodeConfig } from './node-config';
import { readPubSubOptions, type PubSubOptions } from './options';
import { handlePubSubRequest, requestedNode } from './requests';
import { PubSubService, type NotificationSink, type RequestScope, type ServicePolicy } from './service';

/** How long a stanza for a node whose owner cannot be reached waits before one more try [500 ms]. */
const FORWARD_RETRY_MS = 500;
/** Longest ownership key, `<service>/<node>`: the width of component_owners.item (002-component-owners.ts). */
const OWNER_KEY_LENGTH = 384;

/**
 * The XEP-0060 publish-subscribe service at `pubsub.<vhost>` (--comp-class-N=pubsub). In a cluster
 * each pubsub node has one owner (ComponentCluster.ownerOf): requests about a node are forwarded
 * there and run one after another, so publishes keep their order; everything is in the database,
 * so a survivor takes over a dead owner's nodes as they are.
 */
export function createPubSub(ctx: ComponentContext): Component {
  const options = readPubSubOptions(ctx);
  const sink = routedSink(ctx);
  const service = new PubSubService({
    store: ctx.storage.pubsub,
    roster: (owner, contact) => ctx.storage.roster.getItem(owner, contact),
    policy: componentPolicy(ctx, options),
    sink,
    logger: ctx.logger,
    onDeleted: (serviceJid, node) => ctx.cluster?.release(ownerKey(serviceJid, node)),
  });
  return new PubSubComponent(ctx, service);
}

class PubSubComponent implements Component {
  constructor(
    private readonly ctx: ComponentContext,
    private readonly service: PubSubService,
  ) {}

  async handle(stanza: Element, from: JID, to: JID, forwardedBy?: string): Promise<void> {
    // Messages and presence to the service carry nothing it acts on; results and errors are not answered.
    if (stanza.name !== 'iq') return;
    const type = stanza.attrs.type;
    if (type !== 'get' && type !== 'set') return;
    try {
      const payload = stanza.getChildElements()[0];
      if (!payload || to.local !== '' || to.resource !== '') throw new StanzaError('service-unavailable');
      const node = isDisco(payload) ? (payload.attrs.node as string | undefined) || undefined : isPubSub(payload) ? requestedNode(payload) : undefined;
      if (node === undefined) return await this.process(stanza, payload, from, to);
      if (await this.forwardToOwner(stanza, from, to, node, forwardedBy)) return;
      await this.service.serialise(to.domain, node, () => this.process(stanza, payload, from, to));
    } catch (err) {
      this.ctx.router.replyError(stanza, err);
    }
  }

  /** Answers one IQ here, then sends what follows the reply (notifications). */
  private async process(stanza: Element, payload: Element, from: JID, to: JID): Promise<void> {
    const scope: RequestScope = { service: to.domain, actor: from, after: [] };
    const type = stanza.attrs.type as 'get' | 'set';
    let reply: Element | null;
    try {
      if (isDisco(payload)) {
        if (type !== 'get') throw new StanzaError('bad-request');
        reply = payload.attrs.xmlns === NS.DISCO_INFO ? await discoInfo(this.service, scope, payload) : await discoItems(this.service, scope, payload);
      } else if (isPubSub(payload)) {
        reply = await handlePubSubRequest(this.service, scope, type, payload);
      } else {
        throw new StanzaError('service-unavailable');
      }
    } catch (err) {
      this.ctx.router.replyError(stanza, err);
      return;
    }
    const result = new Element('iq', { type: 'result', id: stanza.attrs.id, from: to.toString(), to: from.toString() });
    if (reply) result.cnode(reply);
    await this.ctx.router.route(result, to, from);
    for (const deliver of scope.after) {
      try {
        await deliver();
      } catch (err) {
        this.ctx.logger.error('pubsub notification failed', { err: String((err as Error)?.stack ?? err) });
      }
    }
  }

  /**
   * In a cluster, a request about a node goes to the node's owner (DESIGN: components in a
   * cluster). True when it was handed over; false when this node serves it. A stanza forwarded to
   * us is served here, never forwarded again.
   */
  private async forwardToOwner(stanza: Element, from: JID, to: JID, node: string, forwardedBy: string | undefined): Promise<boolean> {
    const cluster = this.ctx.cluster;
    if (!cluster || forwardedBy) return false;
    const key = ownerKey(to.domain, node);
    if ([...key].length > OWNER_KEY_LENGTH) throw new StanzaError('not-acceptable', `node ids are limited to ${OWNER_KEY_LENGTH - to.domain.length - 1} characters here`);
    for (let attempt = 0; attempt < 2; attempt++) {
      const owner = await cluster.ownerOf(key);
      if (owner === cluster.localNode) return false;
      if (cluster.forward(owner, stanza, from, to)) return true;
      // The link is down: once the peer counts as dead, ownerOf hands the node to a survivor.
      await new Promise((resolve) => setTimeout(resolve, FORWARD_RETRY_MS));
    }
    throw new StanzaError('service-unavailable', 'the cluster node serving this pubsub node cannot be reached; try again', 'wait');
  }
}

function isPubSub(payload: Element): boolean {
  return payload.name === 'pubsub' && (payload.attrs.xmlns === NS.PUBSUB || payload.attrs.xmlns === NS.PUBSUB_OWNER);
}

/** The ownership key of a pubsub node: one per (service JID, node id). */
export function ownerKey(service: string, node: string): string {
  return `${service}/${node}`;
}

function componentPolicy(ctx: ComponentContext, options: PubSubOptions): ServicePolicy {
  // Read at each use: SIGHUP may change --admins.
  const admins = { has: (bare: string) => ctx.config.admins.includes(bare) };
  const hosts = new Set(ctx.config.virtHosts);
  const defaults: NodeConfig = { ...BASE_NODE_CONFIG, rosterGroupsAllowed: [], maxItems: options.maxItems, accessModel: options.defaultAccessModel };
  return {
    defaults,
    maxItemsLimit: options.maxItemsLimit,
    maxPayloadSize: options.maxPayloadSize,
    autoCreate: options.autoCreate,
    // Users of this server's own domains create nodes; with node-creation=admins only --admins do.
    mayCreate: (actor) => (options.nodeCreation === 'admins' ? admins.has(actor.bareString()) : hosts.has(actor.domain) && actor.local !== ''),
    isServiceOwner: (actor) => admins.has(actor.bareString()),
  };
}

/** Notifications go through the router, which reaches users on every cluster node. */
function routedSink(ctx: ComponentContext): NotificationSink {
  const sendTo = (service: string, to: string, message: Element): void => {
    const target = tryParseJID(to);
    if (!target) return;
    const copy = cloneElement(message);
    copy.attrs.to = target.toString();
    void ctx.router.route(copy, hostJID(service), target);
  };
  return {
    sendTo,
    async broadcast(_node, _config, message, subscribers) {
      for (const jid of subscribers) sendTo(message.attrs.from, jid, message);
    },
  };
}
