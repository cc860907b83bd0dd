import { randomBytes } from 'node:crypto';
import { Element, parse as parseXml } from 'ltx';
import { NS } from '../../server/xml/ns';
import type { NodeConfig } from './node-config';

/** One item as it goes out in a notification or an items result. */
export interface OutgoingItem {
  id: string;
  /** The payload element, or undefined for a notification without payload (pubsub#deliver_payloads false). */
  payload?: Element;
}

/**
 * XEP-0060 §7.1.2.1: an event notification from `service`: `<message><event xmlns='...#event'>`
 * with `child` (items, delete, purge, configuration, subscription). Its type follows
 * pubsub#notification_type; `to` is set per recipient.
 */
export function eventMessage(service: string, config: Pick<NodeConfig, 'notificationType'>, child: Element): Element {
  const message = new Element('message', { from: service, type: config.notificationType, id: `ps-${randomBytes(6).toString('hex')}` });
  message.c('event', { xmlns: NS.PUBSUB_EVENT }).cnode(child);
  return message;
}

/** `<items node><item id>payload</item></items>`, the shape of both notifications and results. */
export function itemsElement(node: string, items: OutgoingItem[], xmlns?: string): Element {
  const element = new Element('items', xmlns ? { xmlns, node } : { node });
  for (const item of items) {
    const child = element.c('item', { id: item.id });
    if (item.payload) child.cnode(item.payload);
  }
  return element;
}

/** XEP-0060 §7.2.2.1: `<items node><retract id/></items>`. */
export function retractElement(node: string, ids: string[]): Element {
  const element = new Element('items', { node });
  for (const id of ids) element.c('retract', { id });
  return element;
}

/** XEP-0203 delay on the last published item sent on subscription or presence (XEP-0060 §6.1.7). */
export function withDelay(message: Element, stamp: Date, from: string): Element {
  message.c('delay', { xmlns: NS.DELAY, stamp: stamp.toISOString(), from });
  return message;
}

/** A stored payload back as an element (undefined when it was stored empty or cannot be read). */
export function storedPayload(xml: string): Element | undefined {
  if (xml === '') return undefined;
  try {
    return parseXml(xml);
  } catch {
    return undefined;
  }
}
