import { Element } from 'ltx';
import { tryParseJID } from '../../server/jid';
import { cloneElement } from '../../server/router';
import { isAffiliation, ROLES, type Role } from './affiliations';
import type { MucOptions } from './options';
import { Occupant, Room } from './room';
import { parseStoredConfig } from './room-config';

/**
 * A live room as one element, for a stopping node to hand it to a survivor with everything the
 * occupants see: configuration, affiliations, subject, history, and every occupant's sessions with
 * their last presence and home node. The survivor rebuilds the same Room; nobody has to rejoin.
 */
export function roomToElement(room: Room): Element {
  const el = new Element('room', {
    jid: room.jidString,
    created: room.createdAt.toISOString(),
    locked: room.locked ? '1' : '0',
    config: JSON.stringify(room.config),
  });
  if (room.subject) el.c('subject', { nick: room.subject.nick, stamp: room.subject.stamp.toISOString() }).t(room.subject.text);
  for (const [jid, a] of room.affiliations) {
    el.c('affiliation', { jid, affiliation: a.affiliation, ...(a.reason === undefined ? {} : { reason: a.reason }), ...(a.nick === undefined ? {} : { nick: a.nick }) });
  }
  for (const entry of room.history.all()) {
    el.c('history', { nick: entry.nick, sender: entry.sender, stamp: entry.stamp.toISOString() }).cnode(cloneElement(entry.stanza));
  }
  for (const occupant of room.occupants.values()) {
    const o = el.c('occupant', { nick: occupant.nick, bare: occupant.bare, role: occupant.role });
    for (const session of occupant.sessions.values()) o.c('session', { jid: session.jid.toString(), home: session.home }).cnode(cloneElement(session.presence));
  }
  return el;
}

/** The Room `roomToElement` described; undefined when the element is not one. */
export function roomFromElement(el: Element, options: MucOptions): Room | undefined {
  const jid = tryParseJID(el.attrs.jid ?? '');
  if (!jid || typeof el.attrs.config !== 'string') return undefined;
  const room = new Room(jid, parseStoredConfig(el.attrs.config, options), new Date(el.attrs.created));
  room.locked = el.attrs.locked === '1';
  const subject = el.getChild('subject');
  if (subject) room.subject = { text: subject.getText(), nick: subject.attrs.nick ?? '', stamp: new Date(subject.attrs.stamp) };
  for (const a of el.getChildren('affiliation')) {
    const affiliation = a.attrs.affiliation as string;
    if (!a.attrs.jid || !isAffiliation(affiliation) || affiliation === 'none') continue;
    room.affiliations.set(a.attrs.jid, { affiliation, reason: a.attrs.reason, nick: a.attrs.nick });
  }
  room.history.load(
    el.getChildren('history').flatMap((h) => {
      const stanza = h.getChildElements()[0];
      if (!stanza) return [];
      stanza.parent = null;
      return [{ nick: h.attrs.nick ?? '', sender: h.attrs.sender ?? '', stanza, stamp: new Date(h.attrs.stamp) }];
    }),
  );
  for (const o of el.getChildren('occupant')) {
    const role = o.attrs.role as Role;
    if (!o.attrs.nick || !o.attrs.bare || !ROLES.includes(role)) continue;
    const occupant = new Occupant(o.attrs.nick, o.attrs.bare, role);
    for (const s of o.getChildren('session')) {
      const full = tryParseJID(s.attrs.jid ?? '');
      const presence = s.getChildElements()[0];
      if (!full || !presence || !s.attrs.home) continue;
      presence.parent = null;
      room.addSession(occupant, { jid: full, presence, home: s.attrs.home });
    }
  }
  return room;
}
