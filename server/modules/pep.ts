import type { Element } from 'ltx';
import { PEP_FEATURES } from '../../components/pubsub/features';
import { BASE_NODE_CONFIG, type NodeConfig } from '../../components/pubsub/node-config';
import { handlePubSubRequest, requestedNode } from '../../components/pubsub/requests';
import { PubSubService, type RequestScope } from '../../components/pubsub/service';
import { capsOf, EntityCapabilities } from '../sm/caps';
import { PepDelivery } from '../sm/pep-delivery';
import { RemoteResources } from '../sm/remote-resources';
import { ServerRequests } from '../sm/server-requests';
import type { Session } from '../sm/session';
import type { JID } from '../jid';
import { BOOKMARKS, BookmarksCompat, LEGACY as LEGACY_BOOKMARKS } from './bookmarks';
import { NS } from '../xml/ns';
import type { ServerModule } from './module';

/**
 * A new PEP node's configuration (XEP-0163 §4.1: "the default access model is presence"). One
 * item, as PEP payloads (tune, mood, avatar metadata, nicknames) are states, not logs.
 */
const PEP_DEFAULTS: NodeConfig = {
  ...BASE_NODE_CONFIG,
  rosterGroupsAllowed: [],
  maxItems: 1,
  accessModel: 'presence',
  sendLastPublishedItem: 'on_sub_and_presence',
};
/** The largest max_items of a PEP node ("max" in publish-options, e.g. XEP-0402 bookmarks) [256]. */
const PEP_MAX_ITEMS = 256;
/** Largest PEP item payload in bytes [65536]; avatars (XEP-0084 data) are split into their own node. */
const PEP_MAX_PAYLOAD = 65536;

/**
 * XEP-0163 Personal Eventing Protocol: every account is a pubsub service at its bare JID. The
 * account publishes (nodes are created on first publish), contacts read and get notifications
 * filtered by their entity capabilities (XEP-0115 `<node>+notify`), and a resource coming online
 * gets the last item of each node it wants.
 */
export const pep: ServerModule = (ctx) => {
  const { router, sessions, storage, presence, remote, logger } = ctx;
  const caps = new EntityCapabilities(storage.caps, new ServerRequests(router), logger.category('caps'));
  const remoteResources = new RemoteResources();
  const delivery = new PepDelivery(router, sessions, storage, caps, remote, PEP_DEFAULTS, logger, remoteResources);
  const service = new PubSubService({
    store: storage.pubsub,
    roster: (owner, contact) => storage.roster.getItem(owner, contact),
    policy: {
      defaults: PEP_DEFAULTS,
      maxItemsLimit: PEP_MAX_ITEMS,
      maxPayloadSize: PEP_MAX_PAYLOAD,
      autoCreate: true,
      // Only the account creates and owns nodes at its own JID.
      mayCreate: (actor, account) => actor.bareString() === account,
      isServiceOwner: (actor, account) => actor.bareString() === account,
    },
    sink: delivery,
    logger,
  });

  // XEP-0163 §4: the account is a pubsub/pep service.
  router.identity('account', { category: 'pubsub', type: 'pep' });
  for (const feature of PEP_FEATURES) router.feature('account', feature);

  const deliverAfter = async (scope: RequestScope): Promise<void> => {
    for (const deliver of scope.after) {
      try {
        await deliver();
      } catch (err) {
        logger.error('PEP notification failed', { err: String((err as Error)?.stack ?? err) });
      }
    }
  };

  for (const xmlns of [NS.PUBSUB, NS.PUBSUB_OWNER]) {
    for (const type of ['get', 'set'] as const) {
      router.iq(type, 'account', xmlns, 'pubsub', async ({ payload, from, to }) => {
        const scope: RequestScope = { service: to.bareString(), actor: from, after: [] };
        const run = async (): Promise<Element | null> => {
          const reply = await handlePubSubRequest(service, scope, type, payload);
          // Inside the node's turn, so notifications keep publication order (they precede the result).
          await deliverAfter(scope);
          return reply;
        };
        // A node's requests run one after another on this cluster node, so its items keep their order.
        const node = requestedNode(payload);
        const reply = await (node === undefined ? run() : service.serialise(scope.service, node, run));
        // XEP-0402 §5: the account's bookmarks changed: its XEP-0048 copies follow (and the other way).
        if (type === 'set' && from.bareString() === to.bareString()) {
          if (node === BOOKMARKS) await bookmarks.toPrivate(to);
          else if (node === LEGACY_BOOKMARKS && payload.getChild('publish')) await bookmarks.fromLegacyPep(to);
        }
        return reply;
      });
    }
  }

  // XEP-0402 §5 (#compat): XEP-0048 private storage and the PEP bookmarks node are kept as one.
  const asAccount = async (account: JID, type: 'get' | 'set', payload: Element, node = BOOKMARKS): Promise<Element | null> => {
    const scope: RequestScope = { service: account.bareString(), actor: account, after: [] };
    return service.serialise(scope.service, node, async () => {
      const reply = await handlePubSubRequest(service, scope, type, payload);
      await deliverAfter(scope);
      return reply;
    });
  };
  const bookmarks = new BookmarksCompat(storage, asAccount);
  router.feature('account', `${BOOKMARKS}#compat`);
  router.feature('account', `${BOOKMARKS}#compat-pep`);
  ctx.bookmarksFromPrivate = (account, stored) => bookmarks.fromPrivate(account, stored);

  // Peers ask this node to deliver to its own interested resources.
  ctx.notifyInterestedHere = (stanza, users, feature) => delivery.notifyInterestedHere(stanza, users, feature);

  // A session resumed from another node (XEP-0198) arrives available, without this node having
  // seen its presence: learn its caps (from the database, where they were verified) so that PEP
  // notifications reach it here too. Its last items it had already.
  sessions.onPresenceChange((session) => {
    if (!session.available || !capsOf(session.presence) || caps.featuresOf(session)) return;
    caps.learn(session).catch((err) => logger.warn('learning caps failed', { conn: session.id, err: String(err) }));
  });

  // Contacts on other servers (XEP-0163 across domains): remember their available resources and
  // caps as their presence arrives, learn an unknown ver by asking that resource over s2s, and send
  // it the last items it wants of the user its presence came to.
  // The query goes from the session the presence reached, so that in a cluster its answer comes
  // back to this node (an answer to a bare JID would stay on the node holding the s2s stream).
  presence.onRemotePresence((stanza, from, session) => {
    if (stanza.attrs.type === 'unavailable') return remoteResources.unavailable(from);
    const announcement = capsOf(stanza);
    if (!remoteResources.available(from, announcement) || !announcement) return;
    void (async () => {
      try {
        const features = await caps.learnRemote(announcement, from, session.jid);
        if (features) await delivery.sendLastItemsToRemote(session.bare, from.toString(), features);
      } catch (err) {
        logger.warn('PEP for a remote contact failed', { contact: from.toString(), err: String(err) });
      }
    })();
  });

  // XEP-0115 §6.3 / XEP-0163 §6.2: learn a resource's caps when it announces them, then send it
  // the last items it wants. Not awaited: presence broadcast must not wait for the client's answer.
  const announced = new WeakMap<Session, string>();
  presence.onAvailable((session, initial) => {
    const announcement = capsOf(session.presence);
    if (!announcement) return;
    if (!initial && announced.get(session) === announcement.ver) return;
    announced.set(session, announcement.ver);
    void (async () => {
      try {
        if (await caps.learn(session)) await delivery.sendLastItems(session);
      } catch (err) {
        logger.warn('PEP last items on presence failed', { conn: session.id, err: String(err) });
      }
    })();
  });
};
