import { Element } from 'ltx';
import { StanzaError } from '../../server/errors';
import type { JID } from '../../server/jid';
import { cloneElement } from '../../server/router';
import { NS } from '../../server/xml/ns';
import { affiliationRank } from './affiliations';
import { STATUS, broadcastPresence, occupantPresence, removeOccupant, sendFrom } from './broadcast';
import { parseHistoryRequest } from './history';
import type { MucContext } from './muc-context';
import { Occupant, type OccupantSession, type Room } from './room';

export interface JoinOptions {
  /** The room was created by this presence (status 201). */
  created: boolean;
  /** The nick the client asked for differs from the prepared one (status 210). */
  nickModified: boolean;
  /** The cluster node the user is on. */
  home: string;
}

/**
 * Presence to room/nick from `from` (XEP-0045 §7.2 enter, §7.6 nick change, §7.7 status change,
 * §7.14 exit). `room` exists (the caller created it for a first join).
 */
export async function handleOccupantPresence(ctx: MucContext, room: Room, stanza: Element, from: JID, nick: string, opts: JoinOptions): Promise<void> {
  const type = stanza.attrs.type as string | undefined;
  const occupant = room.occupantOfSession(from.toString());
  if (type === 'unavailable') {
    if (occupant) await leave(ctx, room, occupant, from.toString(), stanza);
    return;
  }
  if (type === 'error') {
    // An occupant whose client bounced our presence is gone: remove it (status 333, as Prosody does).
    if (occupant) await removeOccupant(ctx, room, occupant, { statuses: [STATUS.KICKED, STATUS.TECHNICAL] });
    return;
  }
  if (type !== undefined) return; // subscriptions and probes mean nothing to a room
  if (!occupant) return join(ctx, room, stanza, from, nick, opts);
  if (occupant.nick !== nick) return changeNick(ctx, room, occupant, nick);
  // §7.7: a new availability status, broadcast to everyone.
  const session = occupant.sessions.get(from.toString())!;
  session.presence = stripMuc(stanza);
  // The session that spoke last is the one the others see.
  occupant.sessions.delete(from.toString());
  occupant.sessions.set(from.toString(), session);
  const muc = stanza.getChild('x', NS.MUC);
  if (!muc) {
    broadcastPresence(ctx, room, occupant);
    return;
  }
  // A join from a client that is still in the room (it lost track, e.g. after a reconnect): the
  // others see a status update, the client gets the whole entry again (as Prosody does).
  for (const [viewer, viewerSession] of room.sessions()) {
    if (viewer !== occupant) sendFrom(ctx, room, nick, occupantPresence(room, occupant, viewer, {}, false), viewerSession);
  }
  welcome(ctx, room, occupant, session, selfStatusesFor(room, opts), muc);
}

function selfStatusesFor(room: Room, opts: JoinOptions): number[] {
  const statuses: number[] = [];
  if (room.config.whois === 'anyone') statuses.push(STATUS.NON_ANONYMOUS);
  if (opts.created) statuses.push(STATUS.CREATED);
  if (opts.nickModified) statuses.push(STATUS.NICK_MODIFIED);
  return statuses;
}

/** XEP-0045 §7.2: enter the room, after its checks (locked, banned, members-only, password, nick, max users). */
function join(ctx: MucContext, room: Room, stanza: Element, from: JID, nick: string, opts: JoinOptions): void {
  const bare = from.bareString();
  const affiliation = room.affiliationOf(bare);
  const existing = room.occupants.get(nick);
  const muc = stanza.getChild('x', NS.MUC);
  // §10.1.1: until the owner unlocks it, a new room refuses everyone else with item-not-found.
  if (room.locked && affiliation !== 'owner') throw new StanzaError('item-not-found', 'the room is locked until its owner configures it');
  if (affiliation === 'outcast') throw new StanzaError('forbidden', 'you are banned from this room');
  if (room.config.membersOnly && affiliationRank(affiliation) < affiliationRank('member')) {
    throw new StanzaError('registration-required', 'this room is members-only');
  }
  if (room.config.passwordProtected && muc?.getChildText('password') !== room.config.password) {
    throw new StanzaError('not-authorized', 'a password is required to enter');
  }
  if (existing && existing.bare !== bare) throw new StanzaError('conflict', 'that nickname is in use');
  const limit = room.config.maxUsers;
  if (!existing && limit > 0 && room.occupants.size >= limit && affiliationRank(affiliation) < affiliationRank('admin')) {
    throw new StanzaError('service-unavailable', 'the room is full');
  }

  const session: OccupantSession = { jid: from, presence: stripMuc(stanza), home: opts.home };
  const occupant = existing ?? new Occupant(nick, bare, room.roleFor(affiliation));
  room.addSession(occupant, session);
  // §7.2: the newcomer's presence to everyone else (a second session of a present occupant is news to nobody)...
  if (!existing) {
    for (const [viewer, viewerSession] of room.sessions()) {
      if (viewer !== occupant) sendFrom(ctx, room, nick, occupantPresence(room, occupant, viewer, {}, false), viewerSession);
    }
  }
  welcome(ctx, room, occupant, session, selfStatusesFor(room, opts), muc);
  ctx.occupancy(room, session, nick, affiliation);
}

/**
 * What a session gets on entering, in the order XEP-0045 §7.2 requires: every other occupant's
 * presence, its own presence last (110), the discussion history, then the subject (empty when
 * there is none), which marks the end of the entry.
 */
function welcome(ctx: MucContext, room: Room, occupant: Occupant, session: OccupantSession, selfStatuses: number[], muc: Element | undefined): void {
  for (const other of room.others(occupant)) sendFrom(ctx, room, other.nick, occupantPresence(room, other, occupant, {}, false), session);
  // (The session is the occupant's primary now, so the item names its own JID.)
  sendFrom(ctx, room, occupant.nick, occupantPresence(room, occupant, occupant, { selfStatuses }, true), session);
  for (const message of room.history.select(parseHistoryRequest(muc?.getChild('history')), room.jidString)) {
    sendFrom(ctx, room, message.attrs.from ? room.nickOf(message.attrs.from) : undefined, message, session);
  }
  const subject = new Element('message', { type: 'groupchat' });
  subject.c('subject').t(room.subject?.text ?? '');
  sendFrom(ctx, room, room.subject?.nick || undefined, subject, session);
}

/** XEP-0045 §7.6: a new nick; everyone sees the old one leave with 303 and the new one arrive. */
function changeNick(ctx: MucContext, room: Room, occupant: Occupant, nick: string): void {
  const holder = room.occupants.get(nick);
  if (holder && holder !== occupant) throw new StanzaError('conflict', 'that nickname is in use');
  broadcastPresence(ctx, room, occupant, { unavailable: true, statuses: [STATUS.NEW_NICK], item: { nick } });
  room.rename(occupant, nick);
  broadcastPresence(ctx, room, occupant);
  const affiliation = room.affiliationOf(occupant.bare);
  for (const session of occupant.sessions.values()) ctx.occupancy(room, session, nick, affiliation);
}

/** XEP-0045 §7.14: exit. A second session of a shared nick leaves alone; the last one takes the occupant out. */
async function leave(ctx: MucContext, room: Room, occupant: Occupant, full: string, stanza: Element): Promise<void> {
  const session = occupant.sessions.get(full)!;
  if (occupant.sessions.size > 1) {
    sendFrom(ctx, room, occupant.nick, occupantPresence(room, occupant, occupant, { unavailable: true, payload: stanza }, true), session);
    room.removeSession(occupant, full);
    ctx.occupancy(room, session);
    return;
  }
  await removeOccupant(ctx, room, occupant, { payload: stanza });
}

/** The presence as the occupant's status: without the join's <x xmlns='http://jabber.org/protocol/muc'/>. */
function stripMuc(stanza: Element): Element {
  const copy = cloneElement(stanza);
  copy.children = copy.children.filter((c) => typeof c === 'string' || !(c.name === 'x' && c.attrs.xmlns === NS.MUC));
  return copy;
}
