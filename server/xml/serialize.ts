import type { Element } from 'ltx';
import { escapeXML, escapeXMLText } from 'ltx';

const ATTRIBUTE_SPECIALS = /["&'<>]/;
const TEXT_SPECIALS = /[&<>]/;

/**
 * The XML of `element`, as ltx's toString writes it (same escaping, `<x/>` for an empty element),
 * at about half its cost: ltx hands every piece to a writer callback and runs the escaping regexp
 * replace on every value, where most values have nothing to escape. Stanzas are serialised several
 * times each on their way (to a client or server connection, the archive, a cluster link), and what this allocates
 * is a good part of what the young generation collects.
 */
export function serialize(element: Element): string {
  let out = '<' + element.name;
  const attrs = element.attrs;
  for (const name in attrs) {
    const value: unknown = attrs[name];
    if (value == null) continue;
    const text = typeof value === 'string' ? value : (value as number).toString(10);
    out += ' ' + name + '="' + (ATTRIBUTE_SPECIALS.test(text) ? escapeXML(text) : text) + '"';
  }
  const children = element.children;
  if (children.length === 0) return out + '/>';
  out += '>';
  for (const child of children) {
    if (child == null) continue;
    if (typeof child === 'string') {
      out += TEXT_SPECIALS.test(child) ? escapeXMLText(child) : child;
    } else if (typeof (child as Element).write === 'function') {
      out += serialize(child as Element);
    } else {
      const text = (child as unknown as number).toString(10);
      out += TEXT_SPECIALS.test(text) ? escapeXMLText(text) : text;
    }
  }
  return out + '</' + element.name + '>';
}
