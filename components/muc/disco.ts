import { Element } from 'ltx';
import { NS } from '../../server/xml/ns';
import type { Room } from './room';
import { roomFeatures, roomInfoForm } from './room-config';

/** XEP-0045 §6.1: the service is a conference/text entity that speaks muc. */
export function serviceInfo(): Element {
  const query = new Element('query', { xmlns: NS.DISCO_INFO });
  query.c('identity', { category: 'conference', type: 'text', name: 'Chatrooms' });
  for (const feature of [NS.DISCO_INFO, NS.DISCO_ITEMS, NS.MUC]) query.c('feature', { var: feature });
  return query;
}

/** XEP-0045 §6.3: the public rooms (`rooms`, sorted by JID). */
export function serviceItems(rooms: { jid: string; name: string }[]): Element {
  const query = new Element('query', { xmlns: NS.DISCO_ITEMS });
  for (const room of rooms) query.c('item', room.name ? { jid: room.jid, name: room.name } : { jid: room.jid });
  return query;
}

/**
 * XEP-0045 §6.4: identity, the muc_* features of its configuration, and muc#roominfo; XEP-0410:
 * the room answers a self-ping itself.
 */
export function roomInfo(room: Room): Element {
  const query = new Element('query', { xmlns: NS.DISCO_INFO });
  query.c('identity', { category: 'conference', type: 'text', name: room.config.name || room.jid.local });
  for (const feature of [NS.DISCO_INFO, NS.MUC, NS.MUC_SELF_PING, NS.MAM, ...roomFeatures(room.config)]) query.c('feature', { var: feature });
  query.cnode(roomInfoForm(room.config, room.subject?.text ?? '', room.occupants.size));
  return query;
}

/**
 * XEP-0045 §6.5: the occupants, as room/nick items, when the room is public; otherwise an empty
 * list (which the spec allows), keeping a hidden room's occupants to themselves.
 */
export function roomItems(room: Room): Element {
  const query = new Element('query', { xmlns: NS.DISCO_ITEMS });
  if (room.config.public) for (const nick of room.occupants.keys()) query.c('item', { jid: room.nickJid(nick).toString(), name: nick });
  return query;
}
