import { randomBytes, randomUUID } from 'node:crypto';
import { Element } from 'ltx';
import { StanzaError } from '../../server/errors';
import { tryParseJID, type JID } from '../../server/jid';
import type { Logger } from '../../server/log';
import { cloneElement } from '../../server/router';
import { PUBSUB_LIMITS, type Affiliation, type PubSubNodeRecord, type PubSubStore, type PubSubSubscriptionRecord } from '../../server/storage/pubsub-store';
import { ValueTooLongError } from '../../server/storage/types';
import { NS } from '../../server/xml/ns';
import { checkAccess, checkPublish, mayRetractAny, type RosterLookup } from './access';
import { nodeNotFound, pubsubError } from './errors';
import { eventMessage, itemsElement, retractElement, storedPayload, withDelay, type OutgoingItem } from './events';
import { KeyedQueue } from '../../server/keyed-queue';
import { subscribeOptions, subscribeOptionsForm } from './subscribe-options';
import { applyConfigForm, configForm, PUBLISH_OPTIONS_FORM, storedConfig, unmetPreconditions, type ConfigLimits, type NodeConfig } from './node-config';

/** What differs between the pubsub component and PEP: defaults, limits and who may create. */
export interface ServicePolicy extends ConfigLimits {
  /** A new node's configuration before the creator's own form. */
  defaults: NodeConfig;
  /** Largest item payload in bytes, serialised. */
  maxPayloadSize: number;
  /** XEP-0060 §7.1.4 pubsub#auto-create: publishing to a missing node creates it. */
  autoCreate: boolean;
  /** May `actor` create nodes at `service`? */
  mayCreate(actor: JID, service: string): boolean;
  /** Owns every node of `service`: the PEP account itself, the component's admins. */
  isServiceOwner(actor: JID, service: string): boolean;
}

/** Where notifications go: the component routes them; PEP adds contacts who want them. */
export interface NotificationSink {
  /** One message (without `to`) from `service` to one entity. */
  sendTo(service: string, to: string, message: Element): void;
  /** A node event for its `subscribers` (JIDs with deliver on) and whoever else the service adds. */
  broadcast(node: PubSubNodeRecord, config: NodeConfig, message: Element, subscribers: string[]): Promise<void>;
}

export interface PubSubDeps {
  store: PubSubStore;
  roster: RosterLookup;
  policy: ServicePolicy;
  sink: NotificationSink;
  logger: Logger;
  /** Told when a node is gone (the component releases its cluster claim). */
  onDeleted?(service: string, node: string): void | Promise<void>;
}

/** One request's view: who asks, at which service, and what to do once the reply is out. */
export interface RequestScope {
  service: string;
  actor: JID;
  /** Deliveries that follow the reply (notifications, the last published item). */
  after: (() => void | Promise<void>)[];
}

interface LoadedNode {
  record: PubSubNodeRecord;
  config: NodeConfig;
}

/**
 * The XEP-0060 operations on one service's nodes, for the pubsub component and for PEP alike.
 * Every method checks the actor's rights and throws the StanzaError XEP-0060 names; state is in
 * the database only, so another cluster node can take over a node at any time.
 */
export class PubSubService {
  readonly queue = new KeyedQueue();

  constructor(readonly deps: PubSubDeps) {}

  get policy(): ServicePolicy {
    return this.deps.policy;
  }

  /** Runs `task` after every earlier operation on the same node (per node, in arrival order). */
  serialise<T>(service: string, node: string, task: () => Promise<T>): Promise<T> {
    return this.queue.run(`${service}\0${node}`, task);
  }

  // ---- nodes (XEP-0060 §8) ----

  /** §8.1: creates `node` (or an instant node when undefined) and returns its id. */
  async create(scope: RequestScope, node: string | undefined, configX?: Element): Promise<string> {
    const { service, actor } = scope;
    if (!this.policy.mayCreate(actor, service)) throw new StanzaError('forbidden', 'you may not create nodes here');
    // §8.1.2: an instant node gets a unique id from the service.
    const id = node ?? randomUUID();
    if (id === '') throw pubsubError('not-acceptable', 'nodeid-required');
    let config = this.policy.defaults;
    // §8.1.3: create and configure in one request; a bad form fails the creation.
    if (configX) config = applyConfigForm(config, configX, this.policy);
    const record = await this.guard(() => this.deps.store.createNode(service, id, actor.bareString(), { ...config }));
    // §8.1.3.? "<conflict/>": the NodeID already exists.
    if (!record) throw new StanzaError('conflict', `node ${id} exists already`);
    return id;
  }

  /** §8.2.1: the configuration form, for owners. */
  async configureForm(scope: RequestScope, node: string): Promise<Element> {
    const loaded = await this.load(scope.service, node);
    await this.requireOwner(scope, loaded);
    return configForm(loaded.config, this.policy);
  }

  /** §8.2.4: applies a submitted configuration; §8.2.5: notifies subscribers when asked to. */
  async configure(scope: RequestScope, node: string, x: Element): Promise<void> {
    const loaded = await this.load(scope.service, node);
    await this.requireOwner(scope, loaded);
    const config = applyConfigForm(loaded.config, x, this.policy);
    await this.deps.store.setConfig(loaded.record.id, { ...config });
    // A lower max_items or items no longer persisted: drop what no longer fits.
    if (!config.persistItems) await this.deps.store.purge(loaded.record.id);
    else if (config.maxItems < loaded.config.maxItems) await this.deps.store.trim(loaded.record.id, config.maxItems);
    if (config.notifyConfig && config.deliverNotifications) {
      const child = new Element('configuration', { node });
      if (config.deliverPayloads) child.cnode(configForm(config, this.policy, 'result'));
      await this.broadcastLater(scope, { record: loaded.record, config }, child);
    }
  }

  /** §8.3: the default configuration of a new node. */
  defaultConfigForm(): Element {
    return configForm(this.policy.defaults, this.policy);
  }

  /** §8.4: deletes a node; subscribers hear of it when pubsub#notify_delete is on. */
  async delete(scope: RequestScope, node: string): Promise<void> {
    const loaded = await this.load(scope.service, node);
    await this.requireOwner(scope, loaded);
    // The subscribers are read before the rows go; they are told after the reply.
    if (loaded.config.notifyDelete && loaded.config.deliverNotifications) await this.broadcastLater(scope, loaded, new Element('delete', { node }));
    await this.deps.store.deleteNode(loaded.record.id);
    await this.deps.onDeleted?.(scope.service, node);
  }

  /** §8.5: removes every item; subscribers get a purge notification when retractions are notified. */
  async purge(scope: RequestScope, node: string): Promise<void> {
    const loaded = await this.load(scope.service, node);
    await this.requireOwner(scope, loaded);
    if (!loaded.config.persistItems) throw pubsubError('feature-not-implemented', 'unsupported', 'the node keeps no items', { feature: 'persistent-items' });
    await this.deps.store.purge(loaded.record.id);
    if (loaded.config.notifyRetract && loaded.config.deliverNotifications) await this.broadcastLater(scope, loaded, new Element('purge', { node }));
  }

  // ---- items (XEP-0060 §7) ----

  /**
   * §7.1: publishes one item (id generated when absent); returns the item id. A missing node is
   * created when auto-create is on and the actor may create (§7.1.4), with the publish-options as
   * its configuration; on an existing node the publish-options are preconditions (§7.1.5).
   */
  async publish(scope: RequestScope, node: string, publish: Element, publishOptions?: Element): Promise<string> {
    const items = publish.getChildren('item');
    if (items.length > 1) throw pubsubError('bad-request', 'invalid-payload', 'publish one item at a time');
    const item = items[0] as Element | undefined;
    const payloads = item?.getChildElements() ?? [];
    if (payloads.length > 1) throw pubsubError('bad-request', 'invalid-payload', 'an item holds one payload element');
    const payload = payloads[0] as Element | undefined;
    if (payload) {
      const size = Buffer.byteLength(payload.toString(), 'utf8');
      // §7.1.3.? "<not-acceptable/> ... <payload-too-big/>".
      if (size > this.policy.maxPayloadSize) throw pubsubError('not-acceptable', 'payload-too-big', `payloads are limited to ${this.policy.maxPayloadSize} bytes`);
    }

    let loaded = await this.find(scope.service, node);
    if (!loaded) {
      if (!this.policy.autoCreate || !this.policy.mayCreate(scope.actor, scope.service)) throw nodeNotFound(node);
      let config = this.policy.defaults;
      if (publishOptions) config = applyConfigForm(config, publishOptions, this.policy, PUBLISH_OPTIONS_FORM);
      const record = await this.guard(() => this.deps.store.createNode(scope.service, node, scope.actor.bareString(), { ...config }));
      loaded = record ? { record, config } : await this.load(scope.service, node);
    } else if (publishOptions) {
      const unmet = unmetPreconditions(loaded.config, publishOptions, this.policy);
      // §7.1.5: "<conflict/> ... <precondition-not-met/>".
      if (unmet.length > 0) throw pubsubError('conflict', 'precondition-not-met', `the node's configuration differs: ${unmet.join(', ')}`);
    }
    const { record, config } = loaded;
    const affiliation = await this.affiliationOf(scope, record);
    const subscribed = config.publishModel === 'subscribers' && (await this.subscriptionsOfActor(record, scope.actor)).some((s) => s.state === 'subscribed');
    checkPublish(config, affiliation, subscribed);
    // §7.1.3.6: a persistent node or one delivering payloads needs an item with a payload.
    if (!item && (config.persistItems || config.deliverPayloads)) throw pubsubError('bad-request', 'item-required', 'publish an item');
    if (!payload && config.deliverPayloads) throw pubsubError('bad-request', 'payload-required', 'the item needs a payload');

    const itemId = (item?.attrs.id as string | undefined) || randomUUID();
    if ([...itemId].length > PUBSUB_LIMITS.itemId) throw new StanzaError('not-acceptable', `item ids are limited to ${PUBSUB_LIMITS.itemId} characters`);
    if (payload) payload.parent = null;
    if (config.persistItems) {
      await this.deps.store.publish(record.id, { itemId, publisher: scope.actor.bareString(), payload: payload ? payload.toString() : '' }, config.maxItems);
    }
    if (config.deliverNotifications) {
      const outgoing: OutgoingItem = { id: itemId, payload: config.deliverPayloads && payload ? cloneElement(payload) : undefined };
      await this.broadcastLater(scope, loaded, itemsElement(node, [outgoing]));
    }
    return itemId;
  }

  /** §7.2: deletes items by id; subscribers are told when `notify` (or pubsub#notify_retract) says so. */
  async retract(scope: RequestScope, node: string, ids: string[], notify: boolean | undefined): Promise<void> {
    if (ids.length === 0) throw pubsubError('bad-request', 'item-required', 'name the item to retract');
    const loaded = await this.load(scope.service, node);
    // §7.2.3.3: "<feature-not-implemented/> ... <unsupported feature='persistent-items'/>".
    if (!loaded.config.persistItems) throw pubsubError('feature-not-implemented', 'unsupported', 'the node keeps no items', { feature: 'persistent-items' });
    const affiliation = await this.affiliationOf(scope, loaded.record);
    if (affiliation === 'outcast') throw new StanzaError('forbidden');
    const stored = await this.deps.store.items(loaded.record.id, { ids });
    // §7.2.3.5: "<item-not-found/>" for an item that does not exist.
    if (stored.length < new Set(ids).size) throw new StanzaError('item-not-found', 'no such item');
    // §7.2.3.1: "<forbidden/>" for someone who may not delete that item.
    if (!mayRetractAny(affiliation) && stored.some((item) => item.publisher !== scope.actor.bareString())) throw new StanzaError('forbidden', 'you may only retract your own items');
    for (const id of ids) await this.deps.store.retract(loaded.record.id, id);
    if ((notify ?? loaded.config.notifyRetract) && loaded.config.deliverNotifications) await this.broadcastLater(scope, loaded, retractElement(node, ids));
  }

  /** §6.5: items the actor may see: all, the newest `max`, or those named. */
  async items(scope: RequestScope, node: string, query: { max?: number; ids?: string[] }): Promise<OutgoingItem[]> {
    const loaded = await this.load(scope.service, node);
    await this.requireAccess(scope, loaded);
    if (!loaded.config.persistItems) return [];
    const stored = await this.deps.store.items(loaded.record.id, query);
    return stored.map((item) => ({ id: item.itemId, payload: storedPayload(item.payload) }));
  }

  // ---- subscriptions (XEP-0060 §6) ----

  /** §6.1: subscribes `jid` (the actor's bare or full JID); returns the subscription. */
  async subscribe(scope: RequestScope, node: string, jid: string | undefined, optionsX?: Element): Promise<PubSubSubscriptionRecord> {
    const subscriber = this.ownJid(scope, jid);
    const loaded = await this.load(scope.service, node);
    await this.requireAccess(scope, loaded);
    const existing = (await this.deps.store.subscriptions(loaded.record.id)).find((s) => s.jid === subscriber);
    const subscription: PubSubSubscriptionRecord = existing ?? { jid: subscriber, subid: randomBytes(8).toString('hex'), state: 'subscribed', options: {} };
    if (optionsX) subscription.options = subscribeOptions(subscription.options, optionsX);
    await this.guard(() => this.deps.store.saveSubscription(loaded.record.id, scope.actor.bareString(), subscription));
    // §6.1.7: the last published item goes to a new subscriber.
    if (loaded.config.sendLastPublishedItem !== 'never' && loaded.config.persistItems) {
      const [last] = await this.deps.store.items(loaded.record.id, { max: 1 });
      if (last) {
        const message = eventMessage(scope.service, loaded.config, itemsElement(node, [{ id: last.itemId, payload: loaded.config.deliverPayloads ? storedPayload(last.payload) : undefined }]));
        scope.after.push(() => this.deps.sink.sendTo(scope.service, subscriber, withDelay(message, last.publishedAt, scope.service)));
      }
    }
    return { ...subscription, node };
  }

  /** §6.2: ends a subscription (the only one, or the one named by subid). */
  async unsubscribe(scope: RequestScope, node: string, jid: string | undefined, subid: string | undefined): Promise<void> {
    const subscriber = this.ownJid(scope, jid);
    const loaded = await this.load(scope.service, node);
    const subscription = await this.pickSubscription(loaded, subscriber, subid);
    await this.deps.store.removeSubscription(loaded.record.id, subscriber, subscription.subid);
  }

  /** §6.3.2: the subscription options form. */
  async optionsForm(scope: RequestScope, node: string, jid: string | undefined, subid: string | undefined): Promise<{ jid: string; subid: string; form: Element }> {
    const subscriber = this.ownJid(scope, jid);
    const loaded = await this.load(scope.service, node);
    const subscription = await this.pickSubscription(loaded, subscriber, subid);
    return { jid: subscriber, subid: subscription.subid, form: subscribeOptionsForm(subscription.options) };
  }

  /** §6.3.5: sets subscription options. */
  async setOptions(scope: RequestScope, node: string, jid: string | undefined, subid: string | undefined, x: Element): Promise<void> {
    const subscriber = this.ownJid(scope, jid);
    const loaded = await this.load(scope.service, node);
    const subscription = await this.pickSubscription(loaded, subscriber, subid);
    subscription.options = subscribeOptions(subscription.options, x);
    await this.deps.store.saveSubscription(loaded.record.id, scope.actor.bareString(), subscription);
  }

  /** §5.6: the actor's own subscriptions at the service (on one node when named). */
  async ownSubscriptions(scope: RequestScope, node?: string): Promise<PubSubSubscriptionRecord[]> {
    const all = await this.deps.store.subscriptionsOf(scope.service, scope.actor.bareString());
    return node === undefined ? all : all.filter((s) => s.node === node);
  }

  /** §5.7: the actor's own affiliations at the service. */
  async ownAffiliations(scope: RequestScope, node?: string): Promise<{ node: string; affiliation: Affiliation }[]> {
    const all = await this.deps.store.affiliationsOf(scope.service, scope.actor.bareString());
    return all.filter((a) => node === undefined || a.node === node).map((a) => ({ node: a.node!, affiliation: a.affiliation }));
  }

  // ---- owner management (XEP-0060 §8.8, §8.9) ----

  async nodeSubscriptions(scope: RequestScope, node: string): Promise<PubSubSubscriptionRecord[]> {
    const loaded = await this.load(scope.service, node);
    await this.requireOwner(scope, loaded);
    return this.deps.store.subscriptions(loaded.record.id);
  }

  /** §8.8.2: the owner sets subscriptions ('subscribed' or 'none'); each entity hears of its own (§8.8.4). */
  async setNodeSubscriptions(scope: RequestScope, node: string, changes: { jid: string; state: string; subid?: string }[]): Promise<void> {
    const loaded = await this.load(scope.service, node);
    await this.requireOwner(scope, loaded);
    for (const change of changes) {
      if (change.state !== 'subscribed' && change.state !== 'none') throw new StanzaError('not-acceptable', `unsupported subscription state ${change.state}`);
    }
    const current = await this.deps.store.subscriptions(loaded.record.id);
    for (const change of changes) {
      const bare = bareOf(change.jid);
      let subid = change.subid;
      if (change.state === 'none') {
        await this.deps.store.removeSubscription(loaded.record.id, change.jid, change.subid);
      } else {
        const existing = current.find((s) => s.jid === change.jid && (change.subid === undefined || s.subid === change.subid));
        subid = existing?.subid ?? randomBytes(8).toString('hex');
        await this.guard(() => this.deps.store.saveSubscription(loaded.record.id, bare, { jid: change.jid, subid: subid!, state: 'subscribed', options: existing?.options ?? {} }));
      }
      const notice = new Element('subscription', { node, jid: change.jid, subscription: change.state });
      if (subid && change.state !== 'none') notice.attrs.subid = subid;
      const message = eventMessage(scope.service, loaded.config, notice);
      scope.after.push(() => this.deps.sink.sendTo(scope.service, change.jid, message));
    }
  }

  async nodeAffiliations(scope: RequestScope, node: string): Promise<{ jid: string; affiliation: Affiliation }[]> {
    const loaded = await this.load(scope.service, node);
    await this.requireOwner(scope, loaded);
    return this.deps.store.affiliations(loaded.record.id);
  }

  /** §8.9.2: the owner sets affiliations; an outcast loses its subscriptions; a node keeps an owner. */
  async setNodeAffiliations(scope: RequestScope, node: string, changes: { jid: string; affiliation: string }[]): Promise<void> {
    const loaded = await this.load(scope.service, node);
    await this.requireOwner(scope, loaded);
    const valid = new Set<string>(['owner', 'publisher', 'publish-only', 'member', 'none', 'outcast']);
    const owners = new Set((await this.deps.store.affiliations(loaded.record.id)).filter((a) => a.affiliation === 'owner').map((a) => a.jid));
    for (const change of changes) {
      if (!valid.has(change.affiliation)) throw new StanzaError('not-acceptable', `unknown affiliation ${change.affiliation}`);
      if (change.jid.includes('/')) throw pubsubError('bad-request', 'invalid-jid', 'affiliations are for bare JIDs');
      if (change.affiliation === 'owner') owners.add(change.jid);
      else owners.delete(change.jid);
    }
    // A node nobody owns could never be configured or deleted again.
    if (owners.size === 0 && !this.policy.isServiceOwner(scope.actor, scope.service)) throw new StanzaError('not-acceptable', 'the node must keep an owner');
    for (const change of changes) {
      await this.guard(() => this.deps.store.setAffiliation(loaded.record.id, change.jid, change.affiliation as Affiliation));
      if (change.affiliation === 'outcast') await this.deps.store.removeSubscriptionsOf(loaded.record.id, change.jid);
      // §8.9.4: "the service MAY send a message to the affected entity".
      const message = new Element('message', { from: scope.service, id: `ps-${randomBytes(6).toString('hex')}` });
      message.c('pubsub', { xmlns: NS.PUBSUB }).c('affiliations', { node }).c('affiliation', { jid: change.jid, affiliation: change.affiliation });
      scope.after.push(() => this.deps.sink.sendTo(scope.service, change.jid, message));
    }
  }

  // ---- discovery (XEP-0060 §5) ----

  listNodes(service: string): Promise<PubSubNodeRecord[]> {
    return this.deps.store.listNodes(service);
  }

  /** §5.3: what disco#info of a node shows (no access check: the meta-data is public). */
  async nodeMetaData(service: string, node: string): Promise<{ config: NodeConfig; owners: string[]; publishers: string[]; createdAt: Date }> {
    const loaded = await this.load(service, node);
    const affiliations = await this.deps.store.affiliations(loaded.record.id);
    return {
      config: loaded.config,
      owners: affiliations.filter((a) => a.affiliation === 'owner').map((a) => a.jid),
      publishers: affiliations.filter((a) => a.affiliation === 'publisher').map((a) => a.jid),
      createdAt: loaded.record.createdAt,
    };
  }

  /** §5.5: the item ids of a node, for those who may retrieve its items. */
  async itemIds(scope: RequestScope, node: string): Promise<string[]> {
    return (await this.items(scope, node, {})).map((item) => item.id);
  }

  // ---- helpers ----

  /** The node and its configuration, or item-not-found. */
  async load(service: string, node: string): Promise<LoadedNode> {
    const loaded = await this.find(service, node);
    if (!loaded) throw nodeNotFound(node);
    return loaded;
  }

  async find(service: string, node: string): Promise<LoadedNode | undefined> {
    if ([...node].length > PUBSUB_LIMITS.node) return undefined;
    const record = await this.deps.store.getNode(service, node);
    return record && { record, config: storedConfig(this.policy.defaults, record.config) };
  }

  /** The actor's affiliation; the service's owners (PEP account, admins) own every node. */
  async affiliationOf(scope: RequestScope, record: PubSubNodeRecord): Promise<Affiliation> {
    if (this.policy.isServiceOwner(scope.actor, scope.service)) return 'owner';
    return this.deps.store.affiliation(record.id, scope.actor.bareString());
  }

  private async requireOwner(scope: RequestScope, loaded: LoadedNode): Promise<void> {
    // §8.2.3.2, §8.4.3.1, ...: "<forbidden/>" for anyone but an owner.
    if ((await this.affiliationOf(scope, loaded.record)) !== 'owner') throw new StanzaError('forbidden', 'only an owner of the node may do this');
  }

  private async requireAccess(scope: RequestScope, loaded: LoadedNode): Promise<void> {
    const affiliation = await this.affiliationOf(scope, loaded.record);
    await checkAccess(loaded.config, loaded.record.owner, scope.actor.bareString(), affiliation, this.deps.roster);
  }

  private async subscriptionsOfActor(record: PubSubNodeRecord, actor: JID): Promise<PubSubSubscriptionRecord[]> {
    const bare = actor.bareString();
    return (await this.deps.store.subscriptions(record.id)).filter((s) => bareOf(s.jid) === bare);
  }

  /** §6.2.3: the subscription an unsubscribe or options request means. */
  private async pickSubscription(loaded: LoadedNode, jid: string, subid: string | undefined): Promise<PubSubSubscriptionRecord> {
    const mine = (await this.deps.store.subscriptions(loaded.record.id)).filter((s) => s.jid === jid);
    // §6.2.3.2: "<unexpected-request/> ... <not-subscribed/>".
    if (mine.length === 0) throw pubsubError('unexpected-request', 'not-subscribed', 'you are not subscribed');
    if (subid !== undefined) {
      const found = mine.find((s) => s.subid === subid);
      // §6.2.3.5: "<not-acceptable/> ... <invalid-subid/>".
      if (!found) throw pubsubError('not-acceptable', 'invalid-subid', 'no subscription with that subid');
      return found;
    }
    // §6.2.3.1: "<bad-request/> ... <subid-required/>".
    if (mine.length > 1) throw pubsubError('bad-request', 'subid-required', 'name the subscription');
    return mine[0];
  }

  /** §6.1.3.1: "<bad-request/> ... <invalid-jid/>" when the JID is not the requester's own. */
  private ownJid(scope: RequestScope, jid: string | undefined): string {
    if (jid === undefined || jid === '') throw pubsubError('bad-request', 'jid-required', 'name the JID');
    const parsed = tryParseJID(jid);
    if (!parsed || parsed.bareString() !== scope.actor.bareString()) throw pubsubError('bad-request', 'invalid-jid', 'you may only (un)subscribe your own JID');
    return parsed.toString();
  }

  /** After the reply: the node's event to subscribers with delivery on (read now, sent later). */
  private async broadcastLater(scope: RequestScope, loaded: LoadedNode, child: Element): Promise<void> {
    const subscriptions = await this.deps.store.subscriptions(loaded.record.id);
    const recipients = [...new Set(subscriptions.filter((s) => s.state === 'subscribed' && s.options.deliver !== false).map((s) => s.jid))];
    const message = eventMessage(scope.service, loaded.config, child);
    scope.after.push(() => this.deps.sink.broadcast(loaded.record, loaded.config, message, recipients));
  }

  /** A value too long for its column is the requester's fault, not the server's. */
  private async guard<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      if (err instanceof ValueTooLongError) throw new StanzaError('not-acceptable', err.message);
      throw err;
    }
  }
}

function bareOf(jid: string): string {
  const slash = jid.indexOf('/');
  return slash === -1 ? jid : jid.slice(0, slash);
}
