import { Element } from 'ltx';
import { StanzaError } from '../../server/errors';
import type { JID } from '../../server/jid';
import { cloneElement } from '../../server/router';
import { NS } from '../../server/xml/ns';
import { affiliationRank } from './affiliations';
import { STATUS, broadcastPresence, occupantPresence, removeOccupant, sendFrom, statusMessage } from './broadcast';
import type { MucContext } from './muc-context';
import type { Room } from './room';
import { applyConfigForm, configForm } from './room-config';

function requireOwner(room: Room, from: JID): void {
  // §10: configuring and destroying are for owners; everyone else gets forbidden.
  if (room.affiliationOf(from.bareString()) !== 'owner') throw new StanzaError('forbidden', 'only owners configure or destroy the room');
}

/** XEP-0045 §10.2: the configuration form. */
export function ownerGet(ctx: MucContext, room: Room, query: Element, from: JID): Element {
  requireOwner(room, from);
  if (query.getChildElements().length > 0) throw new StanzaError('bad-request');
  const result = new Element('query', { xmlns: NS.MUC_OWNER });
  result.cnode(configForm(room.config, ctx.options));
  return result;
}

/** XEP-0045 §10.1.2-§10.2 (submit or cancel a form, instant rooms) and §10.9 (destroy). */
export async function ownerSet(ctx: MucContext, room: Room, query: Element, from: JID): Promise<void> {
  requireOwner(room, from);
  const destroy = query.getChild('destroy');
  if (destroy) return destroyRoom(ctx, room, destroy);
  const x = query.getChild('x', NS.DATA_FORMS);
  if (!x) throw new StanzaError('bad-request', 'expected a data form or <destroy/>');
  if (x.attrs.type === 'cancel') {
    // §10.1.3: cancelling the initial configuration destroys the still-locked room.
    if (room.locked) await destroyRoom(ctx, room, new Element('destroy'));
    return;
  }
  if (x.attrs.type !== 'submit') throw new StanzaError('bad-request', 'the form must be of type submit or cancel');
  const before = room.config;
  const next = applyConfigForm(before, x, ctx.options);
  const wasLocked = room.locked;
  room.config = next;
  room.locked = false;
  room.history.setLimit(next.historyLength);

  // Storage follows the persistent flag: a room becomes persistent by being written whole.
  if (next.persistent && (!before.persistent || wasLocked)) {
    await ctx.persist(room, 'room', () => ctx.store.save(room.toStored(), next, room.jid.domain));
  } else if (!next.persistent && before.persistent && !wasLocked) {
    await ctx.persist(room, 'room deletion', () => ctx.store.delete(room.jidString));
  } else if (next.persistent) {
    await ctx.persist(room, 'config', () => ctx.store.saveConfig(room.jidString, next));
  }

  if (wasLocked) return;
  // §10.2.1: occupants learn of the change (104), and of a change of anonymity (172/173).
  const codes: number[] = [STATUS.CONFIG_CHANGED];
  if (before.whois !== next.whois) codes.push(next.whois === 'anyone' ? STATUS.NOW_NON_ANONYMOUS : STATUS.NOW_SEMI_ANONYMOUS);
  statusMessage(ctx, room, codes);
  // Real JIDs became visible or hidden: everyone gets everyone's presence again.
  if (before.whois !== next.whois) for (const occupant of room.occupants.values()) broadcastPresence(ctx, room, occupant);
  // §9.4/§10.2: when a room becomes members-only, those without membership leave with 322.
  if (next.membersOnly && !before.membersOnly) {
    for (const occupant of [...room.occupants.values()]) {
      if (affiliationRank(room.affiliationOf(occupant.bare)) < affiliationRank('member')) {
        await removeOccupant(ctx, room, occupant, { statuses: [STATUS.MEMBERS_ONLY] });
      }
    }
  }
}

/**
 * XEP-0045 §10.9: every occupant gets unavailable presence carrying <destroy/> (with the reason and
 * alternate venue the owner gave), and the room is gone, from the database too.
 */
export async function destroyRoom(ctx: MucContext, room: Room, destroy: Element): Promise<void> {
  const reason = destroy.getChildText('reason');
  const element = new Element('destroy', destroy.attrs.jid ? { jid: destroy.attrs.jid } : {});
  if (reason !== null) element.c('reason').t(reason);
  for (const password of destroy.getChildren('password')) element.cnode(cloneElement(password));
  // §10.9 example: each occupant gets its own unavailable presence, from its own nick.
  for (const occupant of [...room.occupants.values()]) {
    for (const session of occupant.sessions.values()) {
      sendFrom(ctx, room, occupant.nick, occupantPresence(room, occupant, occupant, { unavailable: true, destroy: element }, true), session);
      ctx.occupancy(room, session);
    }
    room.removeOccupant(occupant);
  }
  room.destroyed = true;
  if (room.config.persistent) await ctx.persist(room, 'room deletion', () => ctx.store.delete(room.jidString));
  await ctx.forget(room);
}
