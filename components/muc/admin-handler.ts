import { Element } from 'ltx';
import { StanzaError } from '../../server/errors';
import { tryParseJID, type JID } from '../../server/jid';
import { NS } from '../../server/xml/ns';
import {
  affiliationRank,
  checkAffiliationChange,
  checkRoleChange,
  isAffiliation,
  isRole,
  type Affiliation,
  type Role,
} from './affiliations';
import { STATUS, broadcastPresence, removeOccupant } from './broadcast';
import type { MucContext } from './muc-context';
import type { Occupant, Room } from './room';

interface Actor {
  bare: string;
  affiliation: Affiliation;
  role: Role;
  occupant?: Occupant;
}

function actorOf(room: Room, from: JID): Actor {
  const bare = from.bareString();
  const occupant = room.occupantOfSession(from.toString()) ?? room.occupantsOf(bare)[0];
  return { bare, affiliation: room.affiliationOf(bare), role: occupant?.role ?? 'none', occupant };
}

/**
 * XEP-0045 §9.5/§9.8/§10.5 (affiliation lists) and §8.5/§9.8 (role lists): one item with
 * affiliation= or role= says which list.
 */
export function adminGet(room: Room, query: Element, from: JID): Element {
  const actor = actorOf(room, from);
  const item = query.getChild('item');
  const result = new Element('query', { xmlns: NS.MUC_ADMIN });
  const affiliation = item?.attrs.affiliation as string | undefined;
  const role = item?.attrs.role as string | undefined;
  if (isAffiliation(affiliation) && affiliation !== 'none') {
    // Members may read the member list of a members-only room; the other lists are for admins and owners.
    const memberReader = affiliation === 'member' && room.config.membersOnly && affiliationRank(actor.affiliation) >= affiliationRank('member');
    if (affiliationRank(actor.affiliation) < affiliationRank('admin') && !memberReader) throw new StanzaError('forbidden', 'only admins and owners read affiliation lists');
    for (const [jid, record] of [...room.affiliations].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (record.affiliation !== affiliation) continue;
      const out = result.c('item', { affiliation, jid });
      if (record.nick) out.attrs.nick = record.nick;
      if (record.reason) out.c('reason').t(record.reason);
    }
    return result;
  }
  if (isRole(role) && role !== 'none') {
    if (actor.role !== 'moderator') throw new StanzaError('forbidden', 'only moderators read role lists');
    for (const occupant of room.occupants.values()) {
      if (occupant.role !== role) continue;
      result.c('item', { role, nick: occupant.nick, affiliation: room.affiliationOf(occupant.bare), jid: occupant.primary().jid.toString() });
    }
    return result;
  }
  throw new StanzaError('bad-request', 'ask for one affiliation or role');
}

type Change =
  | { kind: 'role'; target: Occupant; role: Role; reason?: string }
  | { kind: 'affiliation'; jid: string; affiliation: Affiliation; reason?: string };

/**
 * XEP-0045 §8 (kick, voice), §9 (ban, members, moderators, admins), §10.3-§10.7 (owners). Every
 * item is checked before any is applied: the request succeeds or changes nothing.
 */
export async function adminSet(ctx: MucContext, room: Room, query: Element, from: JID): Promise<void> {
  const actor = actorOf(room, from);
  const changes: Change[] = [];
  const items = query.getChildren('item');
  if (items.length === 0) throw new StanzaError('bad-request', 'no item');
  // Affiliations as they will be after the earlier items: the last-owner rule counts them.
  const pending = new Map<string, Affiliation>();
  for (const item of items) {
    const reason = item.getChildText('reason') ?? undefined;
    const role = item.attrs.role as string | undefined;
    const affiliation = item.attrs.affiliation as string | undefined;
    if (role !== undefined) {
      if (!isRole(role)) throw new StanzaError('bad-request', `unknown role ${role}`);
      const target = room.occupants.get(item.attrs.nick ?? '');
      if (!target) throw new StanzaError('item-not-found', 'no occupant has that nickname');
      checkRoleChange(actor, { role: target.role, affiliation: room.affiliationOf(target.bare) }, role);
      changes.push({ kind: 'role', target, role, reason });
    } else if (affiliation !== undefined) {
      if (!isAffiliation(affiliation)) throw new StanzaError('bad-request', `unknown affiliation ${affiliation}`);
      const jid = tryParseJID(item.attrs.jid ?? '');
      if (!jid) throw new StanzaError('jid-malformed', 'an affiliation item needs a jid');
      const bare = jid.bareString();
      const current = pending.get(bare) ?? room.affiliationOf(bare);
      checkAffiliationChange(actor.affiliation, current, affiliation);
      pending.set(bare, affiliation);
      changes.push({ kind: 'affiliation', jid: bare, affiliation, reason });
    } else {
      throw new StanzaError('bad-request', 'an item needs a role or an affiliation');
    }
  }
  // §10.4/§10.5: the only owner may not give up ownership; the service answers <conflict/>.
  const owners = new Set(room.owners());
  for (const [jid, affiliation] of pending) {
    if (affiliation === 'owner') owners.add(jid);
    else owners.delete(jid);
  }
  if (owners.size === 0 && room.owners().length > 0) throw new StanzaError('conflict', 'a room keeps at least one owner');

  for (const change of changes) {
    if (change.kind === 'role') await applyRole(ctx, room, actor, change.target, change.role, change.reason);
    else await applyAffiliation(ctx, room, actor, change.jid, change.affiliation, change.reason);
  }
}

async function applyRole(ctx: MucContext, room: Room, actor: Actor, target: Occupant, role: Role, reason?: string): Promise<void> {
  if (!room.occupants.has(target.nick)) return; // removed by an earlier item
  const item = { actor: actor.occupant?.nick, reason };
  if (role === 'none') {
    // §8.2 kick: unavailable with status 307 to everyone, the kicked occupant included.
    await removeOccupant(ctx, room, target, { statuses: [STATUS.KICKED], item });
    return;
  }
  target.role = role;
  broadcastPresence(ctx, room, target, { item });
}

async function applyAffiliation(ctx: MucContext, room: Room, actor: Actor, jid: string, affiliation: Affiliation, reason?: string): Promise<void> {
  room.setAffiliation(jid, affiliation, reason);
  if (room.config.persistent) await ctx.persist(room, 'affiliation', () => ctx.store.setAffiliation(room.jidString, jid, affiliation, reason));
  const item = { actor: actor.occupant?.nick, reason };
  for (const occupant of room.occupantsOf(jid)) {
    if (affiliation === 'outcast') {
      // §9.1 ban: status 301.
      await removeOccupant(ctx, room, occupant, { statuses: [STATUS.BANNED], item, affiliation: 'outcast' });
    } else if (room.config.membersOnly && affiliationRank(affiliation) < affiliationRank('member')) {
      // §9.4: removed from a members-only room, status 321.
      await removeOccupant(ctx, room, occupant, { statuses: [STATUS.AFFILIATION_REMOVED], item });
    } else {
      occupant.role = room.roleFor(affiliation);
      broadcastPresence(ctx, room, occupant, { item });
      for (const session of occupant.sessions.values()) ctx.occupancy(room, session, occupant.nick, affiliation);
    }
  }
}
