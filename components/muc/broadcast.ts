import { Element } from 'ltx';
import { cloneElement } from '../../server/router';
import { NS } from '../../server/xml/ns';
import type { MucContext } from './muc-context';
import type { Occupant, OccupantSession, Room } from './room';

/** XEP-0045 status codes used here (its status code registry). */
export const STATUS = {
  NON_ANONYMOUS: 100,
  CONFIG_CHANGED: 104,
  SELF: 110,
  NOW_NON_ANONYMOUS: 172,
  NOW_SEMI_ANONYMOUS: 173,
  CREATED: 201,
  NICK_MODIFIED: 210,
  BANNED: 301,
  NEW_NICK: 303,
  KICKED: 307,
  AFFILIATION_REMOVED: 321,
  MEMBERS_ONLY: 322,
  SHUTDOWN: 332,
  TECHNICAL: 333,
} as const;

export interface ItemDetails {
  /** The moderator who acted (its nick). */
  actor?: string;
  reason?: string;
  /** The new nick (status 303). */
  nick?: string;
}

export interface PresenceOptions {
  unavailable?: boolean;
  /** Status codes for every recipient; 110 is added for the occupant's own sessions. */
  statuses?: number[];
  /** Status codes only the occupant itself gets (201, 210, 100). */
  selfStatuses?: number[];
  item?: ItemDetails;
  /** Presence children to carry (show, status...); default: the occupant's primary session's. */
  payload?: Element;
  /** Affiliation to show instead of the stored one (a user just banned still shows outcast). */
  affiliation?: string;
  /** <destroy/> for XEP-0045 §10.9. */
  destroy?: Element;
}

/** The `<x xmlns='http://jabber.org/protocol/muc#user'/>` of an occupant's presence, as `viewer` sees it. */
export function mucUserItem(room: Room, occupant: Occupant, viewer: Occupant | undefined, session: OccupantSession, opts: PresenceOptions, self: boolean): Element {
  const x = new Element('x', { xmlns: NS.MUC_USER });
  if (opts.destroy) {
    x.c('item', { affiliation: 'none', role: 'none' });
    x.cnode(cloneElement(opts.destroy));
  } else {
    // §7.6: the unavailable presence of a nick change keeps the role; every other exit is role none.
    const role = opts.unavailable && opts.item?.nick === undefined ? 'none' : occupant.role;
    const attrs: Record<string, string> = { affiliation: opts.affiliation ?? room.affiliationOf(occupant.bare), role };
    // §7.2 (non-anonymous and semi-anonymous rooms): real JIDs for moderators, or for everyone in a non-anonymous room.
    if (self || room.seesRealJids(viewer)) attrs.jid = session.jid.toString();
    if (opts.item?.nick !== undefined) attrs.nick = opts.item.nick;
    const item = x.c('item', attrs);
    if (opts.item?.actor !== undefined) item.c('actor', { nick: opts.item.actor });
    if (opts.item?.reason !== undefined) item.c('reason').t(opts.item.reason);
  }
  const statuses = [...(opts.statuses ?? [])];
  if (self) statuses.push(STATUS.SELF, ...(opts.selfStatuses ?? []));
  for (const code of [...new Set(statuses)].sort((a, b) => a - b)) x.c('status', { code: String(code) });
  return x;
}

/** The presence of `occupant` (from room/nick) for one viewer session. */
export function occupantPresence(room: Room, occupant: Occupant, viewer: Occupant | undefined, opts: PresenceOptions, self: boolean): Element {
  const source = occupant.primary();
  const presence = new Element('presence', opts.unavailable ? { type: 'unavailable' } : {});
  const payload = opts.payload ?? (opts.unavailable ? undefined : source.presence);
  for (const child of payload?.getChildElements() ?? []) {
    const ns = child.attrs.xmlns as string | undefined;
    if (child.name === 'x' && (ns === NS.MUC || ns === NS.MUC_USER)) continue;
    if (opts.unavailable && child.name !== 'status') continue;
    presence.cnode(cloneElement(child));
  }
  presence.cnode(mucUserItem(room, occupant, viewer, source, opts, self));
  return presence;
}

/** Sends `stanza` (a template: copied per recipient) from room/nick to one session. */
export function sendFrom(ctx: MucContext, room: Room, nick: string | undefined, stanza: Element, to: OccupantSession): void {
  const from = nick === undefined ? room.jid : room.nickJid(nick);
  const copy = cloneElement(stanza);
  copy.attrs.from = from.toString();
  copy.attrs.to = to.jid.toString();
  ctx.send(copy, from, to.jid);
}

/** `occupant`'s presence to every session in the room (its own sessions get 110). */
export function broadcastPresence(ctx: MucContext, room: Room, occupant: Occupant, opts: PresenceOptions = {}): void {
  for (const [viewer, session] of room.sessions()) {
    sendFrom(ctx, room, occupant.nick, occupantPresence(room, occupant, viewer, opts, viewer === occupant), session);
  }
}

/**
 * Takes an occupant out of the room (kick, ban, leave, lost node...): every occupant, itself
 * included, gets its unavailable presence; its nodes learn it is out; an empty temporary room
 * closes.
 */
export async function removeOccupant(ctx: MucContext, room: Room, occupant: Occupant, opts: PresenceOptions = {}): Promise<void> {
  broadcastPresence(ctx, room, occupant, { ...opts, unavailable: true });
  const sessions = [...occupant.sessions.values()];
  room.removeOccupant(occupant);
  for (const session of sessions) ctx.occupancy(room, session);
  await closeIfEmpty(ctx, room);
}

/**
 * XEP-0045 §4.2 (a temporary room is destroyed when the last occupant exits) and §10.1: so is a room
 * still locked (never configured).
 */
export async function closeIfEmpty(ctx: MucContext, room: Room): Promise<void> {
  if (room.occupants.size > 0 || room.destroyed) return;
  if (room.config.persistent && !room.locked) return;
  room.destroyed = true;
  await ctx.forget(room);
}

/** A groupchat message from the room itself carrying status codes (e.g. 104 after a configuration change). */
export function statusMessage(ctx: MucContext, room: Room, codes: number[]): void {
  const message = new Element('message', { type: 'groupchat' });
  const x = message.c('x', { xmlns: NS.MUC_USER });
  for (const code of codes) x.c('status', { code: String(code) });
  for (const [, session] of room.sessions()) sendFrom(ctx, room, undefined, message, session);
}

/**
 * Everyone out at once (the node stops: 332; the room moved to another node: 333): each session
 * gets its own unavailable presence with 110 and `code`, so clients know to rejoin.
 */
export function evictAll(ctx: MucContext, room: Room, code: number): void {
  for (const occupant of [...room.occupants.values()]) {
    for (const session of occupant.sessions.values()) {
      sendFrom(ctx, room, occupant.nick, occupantPresence(room, occupant, occupant, { unavailable: true, statuses: [code] }, true), session);
      ctx.occupancy(room, session);
    }
    room.removeOccupant(occupant);
  }
}
