import type { Element } from 'ltx';
import type { JID } from '../../server/jid';
import { defaultRole, type Affiliation, type Role } from './affiliations';
import { History } from './history';
import type { StoredAffiliation, StoredRoom, Subject } from './muc-store';
import type { RoomConfig } from './room-config';

/** One client connection in the room: a real full JID, its last presence, and the cluster node it is on. */
export interface OccupantSession {
  readonly jid: JID;
  presence: Element;
  /** The node the user's stanzas came from (the user's own node), told when the user enters or leaves. */
  readonly home: string;
}

/**
 * An occupant: a nick held by one bare JID, with one or more sessions (XEP-0045 §7.2: a service
 * may let several resources of one user share a nick; they are one occupant to the others).
 */
export class Occupant {
  readonly sessions = new Map<string, OccupantSession>();

  constructor(
    public nick: string,
    readonly bare: string,
    public role: Role,
  ) {}

  /** The session whose presence the others see: the one that joined last. */
  primary(): OccupantSession {
    let last: OccupantSession | undefined;
    for (const session of this.sessions.values()) last = session;
    if (!last) throw new Error('occupant without sessions');
    return last;
  }
}

export interface AffiliationRecord {
  affiliation: Exclude<Affiliation, 'none'>;
  reason?: string;
  nick?: string;
}

/** A room's state on the node that serves it. Effects (sending, storing) live in the handlers. */
export class Room {
  config: RoomConfig;
  subject?: Subject;
  /** XEP-0045 §10.1.1: a new room is locked until its owner configures it (or accepts the defaults). */
  locked = false;
  /** Set once destroyed: stanzas queued behind the destruction see an absent room. */
  destroyed = false;
  readonly createdAt: Date;
  readonly affiliations = new Map<string, AffiliationRecord>();
  readonly occupants = new Map<string, Occupant>();
  private readonly bySession = new Map<string, Occupant>();
  readonly history: History;

  constructor(
    readonly jid: JID,
    config: RoomConfig,
    createdAt = new Date(),
  ) {
    this.config = config;
    this.createdAt = createdAt;
    this.history = new History(config.historyLength);
  }

  get jidString(): string {
    return this.jid.toString();
  }

  /** room@service/nick */
  nickJid(nick: string): JID {
    return this.jid.withResource(nick);
  }

  /** The nick of a room/nick JID string (history keeps each message's from). */
  nickOf(occupantJid: string): string | undefined {
    const slash = occupantJid.indexOf('/');
    return slash === -1 ? undefined : occupantJid.slice(slash + 1);
  }

  affiliationOf(bare: string): Affiliation {
    return this.affiliations.get(bare)?.affiliation ?? 'none';
  }

  setAffiliation(bare: string, affiliation: Affiliation, reason?: string): void {
    if (affiliation === 'none') this.affiliations.delete(bare);
    else this.affiliations.set(bare, { affiliation, reason });
  }

  owners(): string[] {
    return [...this.affiliations].filter(([, a]) => a.affiliation === 'owner').map(([jid]) => jid);
  }

  occupantOfSession(full: string): Occupant | undefined {
    return this.bySession.get(full);
  }

  occupantsOf(bare: string): Occupant[] {
    return [...this.occupants.values()].filter((o) => o.bare === bare);
  }

  /** Occupants that are not `except`. */
  others(except?: Occupant): Occupant[] {
    return [...this.occupants.values()].filter((o) => o !== except);
  }

  roleFor(affiliation: Affiliation): Role {
    return defaultRole(affiliation, this.config.moderated);
  }

  addSession(occupant: Occupant, session: OccupantSession): void {
    this.occupants.set(occupant.nick, occupant);
    occupant.sessions.set(session.jid.toString(), session);
    this.bySession.set(session.jid.toString(), occupant);
  }

  removeSession(occupant: Occupant, full: string): void {
    occupant.sessions.delete(full);
    this.bySession.delete(full);
    if (occupant.sessions.size === 0 && this.occupants.get(occupant.nick) === occupant) this.occupants.delete(occupant.nick);
  }

  removeOccupant(occupant: Occupant): void {
    for (const full of occupant.sessions.keys()) this.bySession.delete(full);
    occupant.sessions.clear();
    if (this.occupants.get(occupant.nick) === occupant) this.occupants.delete(occupant.nick);
  }

  rename(occupant: Occupant, nick: string): void {
    this.occupants.delete(occupant.nick);
    occupant.nick = nick;
    this.occupants.set(nick, occupant);
  }

  /** Sessions of every occupant, with their occupant. */
  *sessions(): Iterable<[Occupant, OccupantSession]> {
    for (const occupant of this.occupants.values()) for (const session of occupant.sessions.values()) yield [occupant, session];
  }

  /** May `viewer` see occupants' real JIDs? Anyone in a non-anonymous room, moderators otherwise (XEP-0045 §4.2). */
  seesRealJids(viewer: Occupant | undefined): boolean {
    return this.config.whois === 'anyone' || viewer?.role === 'moderator';
  }

  toStored(): StoredRoom {
    const affiliations: StoredAffiliation[] = [...this.affiliations].map(([jid, a]) => ({ jid, affiliation: a.affiliation, reason: a.reason, nick: a.nick }));
    return {
      jid: this.jidString,
      configJson: JSON.stringify(this.config),
      subject: this.subject,
      createdAt: this.createdAt,
      affiliations,
      history: this.history.all(),
    };
  }
}
