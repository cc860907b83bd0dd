import type { Element } from 'ltx';
import type { JID } from '../jid';
import type { ResourceEntry } from '../../strategies/clustering-strategy';

/** Where a routed stanza went before its link was lost: the link (as its sender names it) and its number there. */
export interface RouteTrace {
  link: string;
  seq: number;
}

/**
 * What RFC 6121 delivery needs from the rest of the cluster: the same operations the session
 * manager performs on its own sessions, performed by the other nodes on theirs. On a single
 * node every operation finds nothing (LOCAL_ONLY), so the delivery code has one shape either way.
 */
export interface RemoteDelivery {
  /** False on a single node: callers may skip building what only peers would need. */
  readonly clustered: boolean;
  /**
   * A message to this exact full JID on whichever node holds it, which also sends the received
   * carbons when `carbons`; resolves with 1 when delivered, else 0 (also when a node died first).
   */
  messageToResource(stanza: Element, to: JID, carbons: boolean): Promise<number>;
  /** A message to the available non-negative resources of `bare` on other nodes; resolves with how many got it. */
  messageToUser(stanza: Element, bare: string): Promise<number>;
  /** Any other stanza (IQ, presence, error) to a full JID elsewhere; 1 when delivered, else 0. */
  stanzaToResource(stanza: Element, to: JID): Promise<number>;
  /** Presence to every available resource of `bare` on other nodes. */
  presenceToUser(stanza: Element, bare: string): void;
  /** Other nodes answer a presence probe for their resources of `to`. */
  probe(from: JID, to: JID): void;
  /** Carbon copies for the user's carbons-enabled resources on other nodes, except `exclude` (a full JID). */
  carbons(kind: 'sent' | 'received', stanza: Element, user: string, exclude?: string): void;
  /** A roster push (the <query/> with one item) for the user's interested resources on other nodes. */
  rosterPush(user: string, query: Element): void;
  /** The user's block list changed: other nodes drop their copy and push `command` to interested resources. */
  blocklistChanged(user: string, command: Element): void;
  /** The user's archive preferences (XEP-0313 §7) changed: other nodes drop their cached copy. */
  archivePrefsChanged(user: string): void;
  /** Remote resources of `bare` when the strategy knows them; undefined when it cannot know. */
  remoteResources(bare: string): ResourceEntry[] | undefined;
  /**
   * A PEP notification (XEP-0163 §4.3) for the available resources of `users` on other nodes whose
   * entity capabilities (XEP-0115), as their own node knows them, include `feature` ('<node>+notify').
   */
  notifyInterested(stanza: Element, users: string[], feature: string): void;
  /** Messages were stored offline for `users`: the nodes where they are online deliver them now. */
  offlineStored(users: string[]): void;
  /** Where `stanza`, now falling back (e.g. to offline storage), was routed before its link was lost. */
  lostRoute(stanza: Element): RouteTrace | undefined;
  /** Whether this node delivered that routed stanza before the link closed: its stored copy is then not delivered again. */
  deliveredBefore(trace: RouteTrace): boolean;
}

/** A single node: nothing is elsewhere. */
export const LOCAL_ONLY: RemoteDelivery = {
  clustered: false,
  messageToResource: async () => 0,
  messageToUser: async () => 0,
  stanzaToResource: async () => 0,
  presenceToUser: () => undefined,
  probe: () => undefined,
  carbons: () => undefined,
  rosterPush: () => undefined,
  blocklistChanged: () => undefined,
  archivePrefsChanged: () => undefined,
  remoteResources: () => [],
  notifyInterested: () => undefined,
  offlineStored: () => undefined,
  lostRoute: () => undefined,
  deliveredBefore: () => false,
};
