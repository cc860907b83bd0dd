import type { Element } from 'ltx';
import { NS } from './ns';
import { serialize } from './serialize';

const STANZAS = new Set(['message', 'presence', 'iq']);
const CLIENT_XMLNS = ` xmlns='${NS.CLIENT}'`;
const STREAM_XMLNS = ` xmlns:stream='${NS.STREAM}'`;

/**
 * Serialises one top-level element so that it stands on its own, outside a <stream:stream>
 * that would declare its namespaces: stanzas get `xmlns='jabber:client'` (RFC 7395 §3.3.3 and
 * XEP-0206: payloads "qualified by the 'jabber:client' namespace") and `stream:` elements
 * declare their prefix. The core hands transports elements without these; the element itself
 * is not changed, since the same element may go to several destinations.
 */
export function standaloneXml(element: Element): string {
  const xml = serialize(element);
  const { name } = element;
  if (STANZAS.has(name) && element.attrs.xmlns === undefined) return insertAfterName(xml, name, CLIENT_XMLNS);
  if (name.startsWith('stream:') && element.attrs['xmlns:stream'] === undefined) return insertAfterName(xml, name, STREAM_XMLNS);
  return xml;
}

function insertAfterName(xml: string, name: string, attribute: string): string {
  const end = name.length + 1; // "<" + name
  return xml.slice(0, end) + attribute + xml.slice(end);
}
