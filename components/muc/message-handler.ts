import { Element } from 'ltx';
import { StanzaError } from '../../server/errors';
import { tryParseJID, type JID } from '../../server/jid';
import { cloneElement } from '../../server/router';
import { archivable } from '../../server/sm/archive';
import { NS } from '../../server/xml/ns';
import { affiliationRank } from './affiliations';
import { STATUS, removeOccupant, sendFrom } from './broadcast';
import type { HistoryEntry } from './history';
import type { MucContext } from './muc-context';
import type { Occupant, Room } from './room';

/** A message to the room (groupchat, invitations) or to room/nick (private message). */
export async function handleMessage(ctx: MucContext, room: Room, stanza: Element, from: JID, to: JID): Promise<void> {
  const type = (stanza.attrs.type as string | undefined) ?? 'normal';
  const sender = room.occupantOfSession(from.toString());
  if (type === 'error') {
    // A bounced groupchat message: the occupant is not there any more (XEP-0045 status 333).
    if (sender) await removeOccupant(ctx, room, sender, { statuses: [STATUS.KICKED, STATUS.TECHNICAL] });
    return;
  }
  if (to.resource !== '') return privateMessage(ctx, room, stanza, sender, to.resource, type);
  if (type === 'groupchat') return groupchat(ctx, room, stanza, from, sender);
  const x = stanza.getChild('x', NS.MUC_USER);
  if (x?.getChild('invite')) return invite(ctx, room, stanza, x, from, sender);
  if (x?.getChild('decline')) return decline(ctx, room, x, from);
  throw new StanzaError('bad-request', 'messages to a room are groupchat, invitations or declines');
}

/** XEP-0045 §7.4 (and §8.1 subject changes): reflected to every occupant, the sender included. */
function groupchat(ctx: MucContext, room: Room, stanza: Element, from: JID, sender: Occupant | undefined): void {
  if (!sender) throw new StanzaError('not-acceptable', 'only occupants may send messages to the room');
  // §7.4: a visitor in a moderated room may not send to all occupants (forbidden).
  if (sender.role === 'visitor') throw new StanzaError('forbidden', 'visitors may not speak in a moderated room');
  const subject = stanza.getChild('subject');
  const isSubjectChange = subject !== undefined && stanza.getChild('body') === undefined;
  if (isSubjectChange) {
    // §8.1: moderators, or participants when the room allows it.
    const allowed = sender.role === 'moderator' || (room.config.changeSubject && sender.role === 'participant');
    if (!allowed) throw new StanzaError('forbidden', 'you may not change the subject');
  }
  const message = new Element('message', { type: 'groupchat' });
  if (stanza.attrs.id) message.attrs.id = stanza.attrs.id;
  if (stanza.attrs['xml:lang']) message.attrs['xml:lang'] = stanza.attrs['xml:lang'];
  for (const child of stanza.getChildElements()) {
    // XEP-0359: only the room gives stanza ids in its name.
    if (child.name === 'stanza-id' && child.attrs.xmlns === NS.SID && child.attrs.by === room.jidString) continue;
    message.cnode(cloneElement(child));
  }
  // XEP-0313: messages with a body go into the room's archive; every occupant gets its id.
  if (!isSubjectChange && archivable(message, 'room')) {
    const archived = cloneElement(message);
    archived.attrs.from = room.nickJid(sender.nick).toString();
    const id = ctx.archive.record(room.jidString, 'in', room.nickJid(sender.nick), archived);
    if (id !== undefined) message.c('stanza-id', { xmlns: NS.SID, by: room.jidString, id });
  }
  for (const [, session] of room.sessions()) sendFrom(ctx, room, sender.nick, message, session);

  if (isSubjectChange) {
    room.subject = { text: subject.getText(), nick: sender.nick, stamp: new Date() };
    if (room.config.persistent) void ctx.persist(room, 'subject', () => ctx.store.saveSubject(room.jidString, room.subject!));
    return;
  }
  if (!stanza.getChild('body') || room.config.historyLength === 0) return;
  message.attrs.from = room.nickJid(sender.nick).toString();
  const entry: HistoryEntry = { nick: sender.nick, sender: from.toString(), stanza: message, stamp: new Date() };
  room.history.add(entry);
  // Persistent rooms write history as it arrives, so it survives the loss of this node.
  if (room.config.persistent) void ctx.persist(room, 'history', () => ctx.store.addHistory(room.jidString, entry, room.config.historyLength));
}

/** XEP-0045 §7.5: to one occupant (every session of it), from the sender's room/nick. */
function privateMessage(ctx: MucContext, room: Room, stanza: Element, sender: Occupant | undefined, nick: string, type: string): void {
  // §7.5: a private message of type groupchat is refused with bad-request.
  if (type === 'groupchat') throw new StanzaError('bad-request', 'private messages are not of type groupchat');
  if (!sender) throw new StanzaError('not-acceptable', 'only occupants may send private messages');
  const target = room.occupants.get(nick);
  if (!target) throw new StanzaError('item-not-found', 'no occupant has that nickname');
  const policy = room.config.allowPm;
  const allowed =
    policy === 'anyone' ||
    (policy === 'participants' && (sender.role === 'participant' || sender.role === 'moderator')) ||
    (policy === 'moderators' && sender.role === 'moderator');
  if (!allowed) throw new StanzaError('forbidden', 'private messages are not allowed here');
  const message = new Element('message', { type });
  if (stanza.attrs.id) message.attrs.id = stanza.attrs.id;
  for (const child of stanza.getChildElements()) {
    if (!(child.name === 'x' && child.attrs.xmlns === NS.MUC_USER)) message.cnode(cloneElement(child));
  }
  // §7.5: the service should add an empty muc#user <x/> to private messages.
  message.c('x', { xmlns: NS.MUC_USER });
  for (const session of target.sessions.values()) sendFrom(ctx, room, sender.nick, message, session);
}

/**
 * XEP-0045 §7.8.2 mediated invitation: the room sends it on, from itself. Open rooms let any
 * occupant invite; members-only rooms only admins and owners, or everyone with
 * muc#roomconfig_allowinvites. The invitee of a members-only room becomes a member (§7.8.2 allows it).
 */
async function invite(ctx: MucContext, room: Room, stanza: Element, x: Element, from: JID, sender: Occupant | undefined): Promise<void> {
  if (!sender) throw new StanzaError('not-acceptable', 'only occupants may invite');
  const affiliation = room.affiliationOf(from.bareString());
  const mayInvite = !room.config.membersOnly || room.config.allowInvites || affiliationRank(affiliation) >= affiliationRank('admin');
  if (!mayInvite) throw new StanzaError('forbidden', 'only admins and owners invite to this room');
  const invitees: { jid: JID; reason?: string }[] = [];
  for (const item of x.getChildren('invite')) {
    const jid = tryParseJID(item.attrs.to ?? '');
    if (!jid) throw new StanzaError('jid-malformed', 'the invitee is not a valid JID');
    invitees.push({ jid, reason: item.getChildText('reason') ?? undefined });
  }
  for (const { jid, reason } of invitees) {
    const bare = jid.bareString();
    if (room.config.membersOnly && room.affiliationOf(bare) === 'none') {
      room.setAffiliation(bare, 'member');
      if (room.config.persistent) await ctx.persist(room, 'affiliation', () => ctx.store.setAffiliation(room.jidString, bare, 'member'));
    }
    const message = new Element('message', { from: room.jidString, to: jid.toString() });
    if (stanza.attrs.id) message.attrs.id = stanza.attrs.id;
    const out = message.c('x', { xmlns: NS.MUC_USER });
    const invitation = out.c('invite', { from: from.toString() });
    if (reason !== undefined) invitation.c('reason').t(reason);
    if (room.config.passwordProtected) out.c('password').t(room.config.password);
    message.c('body').t(`${from.bareString()} invites you to the room ${room.jidString}${reason ? `: ${reason}` : ''}`);
    ctx.send(message, room.jid, jid);
  }
}

/** XEP-0045 §7.8.2: the invitee declines; the room tells the inviter, from itself. */
function decline(ctx: MucContext, room: Room, x: Element, from: JID): void {
  const item = x.getChild('decline')!;
  const inviter = tryParseJID(item.attrs.to ?? '');
  if (!inviter) throw new StanzaError('jid-malformed', 'decline needs the inviter in to');
  const message = new Element('message', { from: room.jidString, to: inviter.toString() });
  const declined = message.c('x', { xmlns: NS.MUC_USER }).c('decline', { from: from.bareString() });
  const reason = item.getChildText('reason');
  if (reason !== null) declined.c('reason').t(reason);
  ctx.send(message, room.jid, inviter);
}
