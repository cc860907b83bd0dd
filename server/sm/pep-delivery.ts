import type { Element } from 'ltx';
import { checkAccess } from '../../components/pubsub/access';
import { eventMessage, itemsElement, storedPayload, withDelay } from '../../components/pubsub/events';
import { storedConfig, type NodeConfig } from '../../components/pubsub/node-config';
import type { NotificationSink } from '../../components/pubsub/service';
import { tryParseJID } from '../jid';
import type { Logger } from '../log';
import { cloneElement, type Router } from '../router';
import type { PubSubNodeRecord } from '../storage/pubsub-store';
import type { Storage } from '../storage/types';
import type { CapsAnnouncement, EntityCapabilities } from './caps';
import type { RemoteResources } from './remote-resources';
import type { RemoteDelivery } from './remote-delivery';
import type { Session } from './session';
import type { SessionManager } from './session-manager';

const NOTIFY = '+notify';

/**
 * Who gets a PEP notification (XEP-0163 §4.3): explicit subscribers, and every available resource
 * of the account itself and of contacts allowed by the node's access model whose entity
 * capabilities (XEP-0115) include `<node>+notify` ("filtered notifications"). The publisher's node
 * picks the contacts; each node filters its own resources by the caps it knows, so contacts on
 * any cluster node get what they asked for.
 */
export class PepDelivery implements NotificationSink {
  constructor(
    private readonly router: Router,
    private readonly sessions: SessionManager,
    private readonly storage: Storage,
    private readonly caps: EntityCapabilities,
    private readonly remote: RemoteDelivery,
    private readonly defaults: NodeConfig,
    private readonly logger: Logger,
    /** Contacts' resources on other servers, as their presence told this node. */
    private readonly remoteResources?: RemoteResources,
  ) {}

  sendTo(service: string, to: string, message: Element): void {
    const target = tryParseJID(to);
    const from = tryParseJID(service);
    if (!target || !from) return;
    const copy = cloneElement(message);
    copy.attrs.to = target.toString();
    void this.router.route(copy, from, target);
  }

  async broadcast(node: PubSubNodeRecord, config: NodeConfig, message: Element, subscribers: string[]): Promise<void> {
    for (const jid of subscribers) this.sendTo(node.service, jid, message);
    // Explicit subscribers already get everything; the rest is filtered by their caps.
    const explicit = new Set(subscribers.map(bareOf));
    const recipients = (await this.implicitRecipients(node, config)).filter((user) => !explicit.has(user));
    const users = recipients.filter((jid) => this.isLocal(jid));
    const feature = `${node.node}${NOTIFY}`;
    if (users.length > 0) {
      this.notifyInterestedHere(message, users, feature);
      this.remote.notifyInterested(message, users, feature);
    }
    // Contacts on other servers: each of their resources whose caps want the node, over s2s.
    for (const contact of recipients.filter((jid) => !this.isLocal(jid))) {
      for (const [full, caps] of this.remoteResources?.resources(contact) ?? []) {
        if ((await this.featuresOf(caps))?.has(feature)) this.sendTo(node.service, full, message);
      }
    }
  }

  /** A remote resource's verified features: from memory, else the database (another node may have verified them). */
  private async featuresOf(caps: CapsAnnouncement | undefined): Promise<ReadonlySet<string> | undefined> {
    if (!caps) return undefined;
    const known = this.caps.featuresOfVer(caps.ver);
    if (known) return known;
    const stored = await this.storage.caps.get(caps.ver);
    return stored ? new Set(stored.features) : undefined;
  }

  /**
   * XEP-0163 §6.2 for a contact on another server: its resource `full`, now available with caps
   * wanting `features`, gets the last item of each of `user`'s nodes it wants and may read.
   */
  async sendLastItemsToRemote(user: string, full: string, features: ReadonlySet<string>): Promise<void> {
    const wanted = new Set([...features].filter((f) => f.endsWith(NOTIFY)).map((f) => f.slice(0, -NOTIFY.length)));
    if (wanted.size === 0) return;
    const bare = bareOf(full);
    for (const node of await this.storage.pubsub.nodesOfServices([user])) {
      if (!wanted.has(node.node)) continue;
      const config = storedConfig(this.defaults, node.config);
      if (config.sendLastPublishedItem !== 'on_sub_and_presence' || !config.persistItems || !config.deliverNotifications) continue;
      if (!(await this.mayReceive(node, config, bare))) continue;
      const [last] = await this.storage.pubsub.items(node.id, { max: 1 });
      if (!last) continue;
      const message = eventMessage(node.service, config, itemsElement(node.node, [{ id: last.itemId, payload: config.deliverPayloads ? storedPayload(last.payload) : undefined }]));
      this.sendTo(node.service, full, withDelay(message, last.publishedAt, node.service));
    }
  }

  /** To this node's available resources of `users` whose caps say they want `feature`. */
  notifyInterestedHere(message: Element, users: string[], feature: string): void {
    const from = tryParseJID(message.attrs.from ?? '');
    if (!from) return;
    for (const user of users) {
      for (const session of this.sessions.resources(user)) {
        if (!session.available || !this.caps.featuresOf(session)?.has(feature)) continue;
        const copy = cloneElement(message);
        copy.attrs.to = session.full;
        void this.router.route(copy, from, session.jid);
      }
    }
  }

  /**
   * XEP-0163 §6.2 ("send last published item"): a resource that comes online (or whose caps
   * become known) gets the last item of every node it wants notifications of, from its own
   * account and from the contacts it is subscribed to, where the node's access model allows.
   */
  async sendLastItems(session: Session): Promise<void> {
    const features = this.caps.featuresOf(session);
    if (!features) return;
    const wanted = new Set([...features].filter((f) => f.endsWith(NOTIFY)).map((f) => f.slice(0, -NOTIFY.length)));
    if (wanted.size === 0) return;
    const roster = await this.storage.roster.getItems(session.bare);
    const services = [session.bare, ...roster.filter((i) => i.subscription === 'to' || i.subscription === 'both').map((i) => i.jid)];
    for (const node of await this.storage.pubsub.nodesOfServices(services)) {
      if (!wanted.has(node.node) || session.ended) continue;
      const config = storedConfig(this.defaults, node.config);
      if (config.sendLastPublishedItem !== 'on_sub_and_presence' || !config.persistItems || !config.deliverNotifications) continue;
      if (node.service !== session.bare && !(await this.mayReceive(node, config, session.bare))) continue;
      const [last] = await this.storage.pubsub.items(node.id, { max: 1 });
      if (!last) continue;
      const message = eventMessage(node.service, config, itemsElement(node.node, [{ id: last.itemId, payload: config.deliverPayloads ? storedPayload(last.payload) : undefined }]));
      this.sendTo(node.service, session.full, withDelay(message, last.publishedAt, node.service));
    }
  }

  /** The account itself and its contacts (subscription from/both, on any server) that the access model lets in. */
  private async implicitRecipients(node: PubSubNodeRecord, config: NodeConfig): Promise<string[]> {
    const owner = node.service;
    const contacts = (await this.storage.roster.getItems(owner)).filter((i) => i.subscription === 'from' || i.subscription === 'both');
    let allowed: string[];
    switch (config.accessModel) {
      case 'roster':
        allowed = contacts.filter((i) => i.groups.some((g) => config.rosterGroupsAllowed.includes(g))).map((i) => i.jid);
        break;
      case 'whitelist': {
        const affiliated = new Set((await this.storage.pubsub.affiliations(node.id)).filter((a) => a.affiliation !== 'outcast' && a.affiliation !== 'publish-only').map((a) => a.jid));
        allowed = contacts.map((i) => i.jid).filter((jid) => affiliated.has(jid));
        break;
      }
      default:
        allowed = contacts.map((i) => i.jid);
    }
    if (config.accessModel !== 'whitelist' && config.accessModel !== 'roster') {
      // Outcasts get nothing whatever the model.
      const outcasts = new Set((await this.storage.pubsub.affiliations(node.id)).filter((a) => a.affiliation === 'outcast').map((a) => a.jid));
      allowed = allowed.filter((jid) => !outcasts.has(jid));
    }
    return [owner, ...allowed];
  }

  private async mayReceive(node: PubSubNodeRecord, config: NodeConfig, bare: string): Promise<boolean> {
    try {
      const affiliation = await this.storage.pubsub.affiliation(node.id, bare);
      await checkAccess(config, node.owner, bare, affiliation, (owner, contact) => this.storage.roster.getItem(owner, contact));
      return true;
    } catch (err) {
      if (!(err instanceof Error && err.name === 'StanzaError')) this.logger.warn('PEP access check failed', { err: String(err) });
      return false;
    }
  }

  private isLocal(jid: string): boolean {
    return this.router.hosts.has(jid.slice(jid.indexOf('@') + 1));
  }
}

function bareOf(jid: string): string {
  const slash = jid.indexOf('/');
  return slash === -1 ? jid : jid.slice(0, slash);
}
