import type { Element } from 'ltx';
import type { MessageArchive } from '../../server/sm/archive';
import type { JID } from '../../server/jid';
import type { Logger } from '../../server/log';
import type { Affiliation } from './affiliations';
import type { MucStore } from './muc-store';
import type { MucOptions } from './options';
import type { OccupantSession, Room } from './room';

/** What the room handlers may do beyond changing a Room: send, store, and report. */
export interface MucContext {
  readonly options: MucOptions;
  /** The server's --admins (bare JIDs), as they are now (SIGHUP may change them). */
  readonly admins: { has(bare: string): boolean };
  readonly logger: Logger;
  readonly store: MucStore;
  /** XEP-0313 room archives (groupchat messages with a body). */
  readonly archive: MessageArchive;
  /** Sends one stanza; stanzas to one recipient arrive in the order they were sent. */
  send(stanza: Element, from: JID, to: JID): void;
  /** Runs a database write after the room's earlier writes (in order); failures are logged. */
  persist(room: Room, what: string, write: () => Promise<void>): Promise<void>;
  /** Tells the user's node that `session` is now in the room as `nick` (or, without nick, out of it). */
  occupancy(room: Room, session: OccupantSession, nick?: string, affiliation?: Affiliation): void;
  /** Creates and serves a new room (the caller checked that it may). */
  create(jid: JID): Room;
  /** The room is gone (destroyed, or temporary and empty): forget it and its cluster claim. */
  forget(room: Room): Promise<void>;
}
