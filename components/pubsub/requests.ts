import { Element } from 'ltx';
import { StanzaError } from '../../server/errors';
import { tryParseJID } from '../../server/jid';
import { dataFormIn, parseFormBoolean } from '../../server/xml/data-form';
import { NS } from '../../server/xml/ns';
import { pubsubError } from './errors';
import { itemsElement } from './events';
import type { PubSubService, RequestScope } from './service';
import { subscribeOptionsForm } from './subscribe-options';

/** Requests that name a node but read only the requester's own rows, so any cluster node may answer. */
const SERVICE_WIDE = new Set(['subscriptions', 'affiliations']);

/**
 * The node a `<pubsub/>` request is about, or undefined for a service-level one (instant node
 * creation, the requester's own subscriptions and affiliations, default configuration).
 */
export function requestedNode(payload: Element): string | undefined {
  const owner = payload.attrs.xmlns === NS.PUBSUB_OWNER;
  for (const child of payload.getChildElements()) {
    if (!owner && SERVICE_WIDE.has(child.name)) return undefined;
    const node = child.attrs.node as string | undefined;
    if (node !== undefined && node !== '') return node;
  }
  return undefined;
}

/**
 * Carries out one XEP-0060 request (`<pubsub/>` in the pubsub or pubsub#owner namespace) and
 * returns the reply payload (null: an empty result). Shared by the pubsub component and PEP.
 */
export async function handlePubSubRequest(service: PubSubService, scope: RequestScope, type: 'get' | 'set', payload: Element): Promise<Element | null> {
  const owner = payload.attrs.xmlns === NS.PUBSUB_OWNER;
  const children = payload.getChildElements();
  const first = children[0];
  if (!first) throw new StanzaError('bad-request', 'empty pubsub request');
  const sibling = (name: string) => payload.getChild(name);
  if (owner) return type === 'get' ? ownerGet(service, scope, first) : ownerSet(service, scope, first);
  if (type === 'get') return userGet(service, scope, first);
  // A set carries its main element with optional companions (configure, options, publish-options).
  // `options` is a request of its own only without a subscribe beside it.
  const main = ['create', 'publish', 'subscribe', 'unsubscribe', 'retract', 'options'].map((name) => payload.getChild(name)).find(Boolean);
  if (!main) throw new StanzaError('feature-not-implemented', `unsupported pubsub request <${first.name}/>`);
  switch (main.name) {
    case 'create': {
      const requested = main.attrs.node as string | undefined;
      const id = await service.create(scope, requested === '' ? undefined : requested, dataFormIn(sibling('configure')));
      // §8.1.2: an instant node's id goes back to the requester.
      return requested ? null : pubsub(NS.PUBSUB, new Element('create', { node: id }));
    }
    case 'publish': {
      const node = nodeOf(main);
      const itemId = await service.publish(scope, node, main, dataFormIn(sibling('publish-options')));
      const reply = pubsub(NS.PUBSUB);
      reply.c('publish', { node }).c('item', { id: itemId });
      return reply;
    }
    case 'retract': {
      const notify = main.attrs.notify === undefined ? undefined : parseFormBoolean(String(main.attrs.notify));
      const ids = main.getChildren('item').map((i) => i.attrs.id as string | undefined).filter((id): id is string => Boolean(id));
      await service.retract(scope, nodeOf(main), ids, notify);
      return null;
    }
    case 'subscribe': {
      const node = nodeOf(main);
      const subscription = await service.subscribe(scope, node, main.attrs.jid, dataFormIn(sibling('options')));
      const reply = pubsub(NS.PUBSUB);
      reply.c('subscription', { node, jid: subscription.jid, subid: subscription.subid, subscription: subscription.state });
      return reply;
    }
    case 'unsubscribe':
      await service.unsubscribe(scope, nodeOf(main), main.attrs.jid, main.attrs.subid);
      return null;
    default: {
      const x = dataFormIn(main);
      if (!x) throw pubsubError('bad-request', 'invalid-options', 'submit an options form');
      await service.setOptions(scope, nodeOf(main), main.attrs.jid, main.attrs.subid, x);
      return null;
    }
  }
}

async function userGet(service: PubSubService, scope: RequestScope, request: Element): Promise<Element> {
  switch (request.name) {
    case 'items': {
      const node = nodeOf(request);
      const ids = request.getChildren('item').map((i) => i.attrs.id as string | undefined).filter((id): id is string => Boolean(id));
      const max = request.attrs.max_items === undefined ? undefined : Number(request.attrs.max_items);
      if (max !== undefined && (!Number.isInteger(max) || max < 1)) throw new StanzaError('bad-request', 'max_items is a positive whole number');
      const items = await service.items(scope, node, ids.length > 0 ? { ids } : { max });
      return pubsub(NS.PUBSUB, itemsElement(node, items));
    }
    case 'subscriptions': {
      const node = optionalNode(request);
      const list = new Element('subscriptions', node ? { node } : {});
      for (const s of await service.ownSubscriptions(scope, node)) list.c('subscription', { node: s.node!, jid: s.jid, subscription: s.state, subid: s.subid });
      return pubsub(NS.PUBSUB, list);
    }
    case 'affiliations': {
      const node = optionalNode(request);
      const list = new Element('affiliations', node ? { node } : {});
      for (const a of await service.ownAffiliations(scope, node)) list.c('affiliation', { node: a.node, affiliation: a.affiliation });
      return pubsub(NS.PUBSUB, list);
    }
    case 'options': {
      const node = nodeOf(request);
      const { jid, subid, form } = await service.optionsForm(scope, node, request.attrs.jid, request.attrs.subid);
      const reply = pubsub(NS.PUBSUB);
      reply.c('options', { node, jid, subid }).cnode(form);
      return reply;
    }
    case 'default': {
      // §6.4: the default subscription options.
      const reply = pubsub(NS.PUBSUB);
      reply.c('default').cnode(subscribeOptionsForm({}));
      return reply;
    }
    default:
      throw new StanzaError('feature-not-implemented', `unsupported pubsub request <${request.name}/>`);
  }
}

async function ownerGet(service: PubSubService, scope: RequestScope, request: Element): Promise<Element> {
  const reply = pubsub(NS.PUBSUB_OWNER);
  switch (request.name) {
    case 'configure': {
      const node = nodeOf(request);
      reply.c('configure', { node }).cnode(await service.configureForm(scope, node));
      return reply;
    }
    case 'default':
      reply.c('default').cnode(service.defaultConfigForm());
      return reply;
    case 'subscriptions': {
      const node = nodeOf(request);
      const list = reply.c('subscriptions', { node });
      for (const s of await service.nodeSubscriptions(scope, node)) list.c('subscription', { jid: s.jid, subscription: s.state, subid: s.subid });
      return reply;
    }
    case 'affiliations': {
      const node = nodeOf(request);
      const list = reply.c('affiliations', { node });
      for (const a of await service.nodeAffiliations(scope, node)) list.c('affiliation', { jid: a.jid, affiliation: a.affiliation });
      return reply;
    }
    default:
      throw new StanzaError('feature-not-implemented', `unsupported pubsub#owner request <${request.name}/>`);
  }
}

async function ownerSet(service: PubSubService, scope: RequestScope, request: Element): Promise<null> {
  const node = nodeOf(request);
  switch (request.name) {
    case 'configure': {
      const x = dataFormIn(request);
      if (!x) throw new StanzaError('bad-request', 'submit a configuration form');
      await service.configure(scope, node, x);
      return null;
    }
    case 'delete':
      await service.delete(scope, node);
      return null;
    case 'purge':
      await service.purge(scope, node);
      return null;
    case 'subscriptions': {
      const changes = request.getChildren('subscription').map((s) => ({ jid: requireJid(s), state: String(s.attrs.subscription ?? ''), subid: s.attrs.subid as string | undefined }));
      await service.setNodeSubscriptions(scope, node, changes);
      return null;
    }
    case 'affiliations': {
      const changes = request.getChildren('affiliation').map((a) => ({ jid: requireJid(a), affiliation: String(a.attrs.affiliation ?? '') }));
      await service.setNodeAffiliations(scope, node, changes);
      return null;
    }
    default:
      throw new StanzaError('feature-not-implemented', `unsupported pubsub#owner request <${request.name}/>`);
  }
}

/** `<pubsub xmlns/>`, with `child` inside when given (ltx's cnode returns the child, not the parent). */
function pubsub(xmlns: string, child?: Element): Element {
  const element = new Element('pubsub', { xmlns });
  if (child) element.cnode(child);
  return element;
}

/** XEP-0060 §14.2: a request that needs a node and names none is "<bad-request/> ... <nodeid-required/>". */
function nodeOf(request: Element): string {
  const node = request.attrs.node as string | undefined;
  if (node === undefined || node === '') throw pubsubError('bad-request', 'nodeid-required', 'name the node');
  return node;
}

function optionalNode(request: Element): string | undefined {
  const node = request.attrs.node as string | undefined;
  return node === '' ? undefined : node;
}

function requireJid(element: Element): string {
  const jid = element.attrs.jid as string | undefined;
  if (!jid) throw pubsubError('bad-request', 'jid-required', 'name the JID');
  const parsed = tryParseJID(jid);
  if (!parsed) throw new StanzaError('jid-malformed', `not a JID: ${jid}`);
  return parsed.toString();
}
