import type { Config } from '../config/types';
import type { Logger } from '../log';
import type { Router } from '../router';
import type { MessageService } from '../sm/messages';
import type { PresenceService } from '../sm/presence';
import type { RosterService } from '../sm/roster-service';
import type { SessionManager } from '../sm/session-manager';
import type { Storage } from '../storage/types';

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
}

/** One XEP, one file: a function that registers handlers and disco features. */
export type ServerModule = (ctx: ModuleContext) => void;
