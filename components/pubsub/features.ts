import { NS } from '../../server/xml/ns';

/** XEP-0060 §10 features this implementation supports, as `http://jabber.org/protocol/pubsub#<name>`. */
const SERVICE_FEATURES = [
  'access-open', 'access-presence', 'access-roster', 'access-whitelist', 'auto-create', 'config-node',
  'create-and-configure', 'create-nodes', 'delete-items', 'delete-nodes', 'instant-nodes', 'item-ids',
  'last-published', 'manage-subscriptions', 'member-affiliation', 'meta-data', 'modify-affiliations',
  'outcast-affiliation', 'persistent-items', 'publish', 'publish-options', 'publish-only-affiliation',
  'publisher-affiliation', 'purge-nodes', 'retract-items', 'retrieve-affiliations', 'retrieve-default',
  'retrieve-items', 'retrieve-subscriptions', 'subscribe', 'subscription-notifications', 'subscription-options',
] as const;

/** What the pubsub component advertises in disco#info. */
export const PUBSUB_SERVICE_FEATURES: readonly string[] = [NS.PUBSUB, ...SERVICE_FEATURES.map((f) => `${NS.PUBSUB}#${f}`)];

/** XEP-0163 §4: what an account advertises for PEP (auto-create and publish-options included). */
export const PEP_FEATURES: readonly string[] = [
  NS.PUBSUB,
  ...['access-presence', 'access-open', 'access-roster', 'access-whitelist', 'auto-create', 'auto-subscribe', 'config-node', 'create-and-configure', 'create-nodes', 'delete-items', 'delete-nodes', 'filtered-notifications', 'item-ids', 'last-published', 'persistent-items', 'publish', 'publish-options', 'purge-nodes', 'retract-items', 'retrieve-items', 'retrieve-subscriptions', 'subscribe'].map(
    (f) => `${NS.PUBSUB}#${f}`,
  ),
];
