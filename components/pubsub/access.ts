import { StanzaError } from '../../server/errors';
import type { RosterItem } from '../../server/storage/types';
import type { Affiliation } from '../../server/storage/pubsub-store';
import { pubsubError } from './errors';
import type { NodeConfig } from './node-config';

/** How the access models read the node owner's roster (in the database: the owner may be on any node or offline). */
export type RosterLookup = (owner: string, contact: string) => Promise<RosterItem | undefined>;

/** XEP-0060 §4.1 table 4: affiliations that may retrieve items and subscribe whatever the access model. */
const TRUSTED: ReadonlySet<Affiliation> = new Set(['owner', 'publisher', 'member']);

/**
 * XEP-0060 §6.1.3 and §6.5.8: may `bare` subscribe to or retrieve items of a node with this
 * configuration? Throws the error the spec names for each access model.
 */
export async function checkAccess(config: NodeConfig, nodeOwner: string, bare: string, affiliation: Affiliation, roster: RosterLookup): Promise<void> {
  // §6.1.3.8: "If the requesting entity is blocked from subscribing ... <forbidden/>".
  if (affiliation === 'outcast') throw new StanzaError('forbidden', 'you are banned from this node');
  if (TRUSTED.has(affiliation) || bare === nodeOwner) return;
  switch (config.accessModel) {
    case 'open':
      return;
    case 'presence': {
      // §6.1.3.2: "<not-authorized/> ... <presence-subscription-required/>".
      const item = await roster(nodeOwner, bare);
      if (item && (item.subscription === 'from' || item.subscription === 'both')) return;
      throw pubsubError('not-authorized', 'presence-subscription-required', 'a presence subscription to the node owner is required');
    }
    case 'roster': {
      // §6.1.3.3: "<not-authorized/> ... <not-in-roster-group/>".
      const item = await roster(nodeOwner, bare);
      if (item && item.groups.some((group) => config.rosterGroupsAllowed.includes(group))) return;
      throw pubsubError('not-authorized', 'not-in-roster-group', 'you are not in an allowed roster group of the node owner');
    }
    case 'whitelist':
      // §6.1.3.4: "<not-allowed/> ... <closed-node/>".
      throw pubsubError('not-allowed', 'closed-node', 'this node is for its whitelist only');
  }
}

/** XEP-0060 §7.1.3.1: may `affiliation` (subscribed or not) publish to a node with this publish model? */
export function checkPublish(config: NodeConfig, affiliation: Affiliation, subscribed: boolean): void {
  if (affiliation === 'outcast') throw new StanzaError('forbidden', 'you are banned from this node');
  if (affiliation === 'owner' || affiliation === 'publisher' || affiliation === 'publish-only') return;
  if (config.publishModel === 'open') return;
  if (config.publishModel === 'subscribers' && (subscribed || affiliation === 'member')) return;
  throw new StanzaError('forbidden', 'you may not publish to this node');
}

/** XEP-0060 §4.1 table 4: owners and publishers retract any item; others only their own. */
export function mayRetractAny(affiliation: Affiliation): boolean {
  return affiliation === 'owner' || affiliation === 'publisher';
}
