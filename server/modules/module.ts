import type { Config } from '../config/types';
import type { Logger } from '../log';
import type { Router } from '../router';
import type { MessageService } from '../sm/messages';
import type { PresenceService } from '../sm/presence';
import type { RosterService } from '../sm/roster-service';
import type { SessionManager } from '../sm/session-manager';
import type { Storage } from '../storage/types';
import type { RemoteDelivery } from '../sm/remote-delivery';
import type { Element } from 'ltx';
import type { JID } from '../jid';
import type { PushNotifier } from './push';
import type { MessageArchive } from '../sm/archive';
import type { SessionAdmin } from '../sm/session-admin';

/** What a module may use; it registers its routes and features on the router and nothing else at import time. */
export interface ModuleContext {
  config: Config;
  logger: Logger;
  storage: Storage;
  router: Router;
  sessions: SessionManager;
  roster: RosterService;
  presence: PresenceService;
  messages: MessageService;
  /** The other nodes of the cluster (nothing on a single node). */
  remote: RemoteDelivery;
  /** The operator's hand on sessions of every node (XEP-0133 commands). */
  admin?: SessionAdmin;
  /** XEP-0313: the users' message archives (the MAM module answers queries on them). */
  archive?: MessageArchive;
  /** XEP-0357: tells app servers of waiting messages; the push module tells it of changed registrations. */
  pushNotifier?: PushNotifier;
  /** Set by the blocking module: what this node does when a peer reports a changed block list. */
  blocklistChangedHere?: (user: string, command: Element) => void;
  /** Set by the PEP module: XEP-0048 bookmarks stored in private XML are published as XEP-0402 ones. */
  bookmarksFromPrivate?: (account: JID, stored: Element) => Promise<void>;
  /** Set by the PEP module: delivers a peer's PEP notification to this node's interested resources. */
  notifyInterestedHere?: (stanza: Element, users: string[], feature: string) => void;
}

/** One XEP, one file: a function that registers handlers and disco features. */
export type ServerModule = (ctx: ModuleContext) => void;
