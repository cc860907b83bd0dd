import type { Element } from 'ltx';
import { nextStanza, xml, type XmppClient } from './server';

/** Client-side XEP-0060 requests, as a user's client sends them. */

export const PUBSUB = 'http://jabber.org/protocol/pubsub';
export const PUBSUB_OWNER = 'http://jabber.org/protocol/pubsub#owner';
export const PUBSUB_EVENT = 'http://jabber.org/protocol/pubsub#event';
export const PUBSUB_ERRORS = 'http://jabber.org/protocol/pubsub#errors';
export const DATA_FORMS = 'jabber:x:data';

/** An IQ to `to` with one `<pubsub/>` child holding `children`; resolves with the result. */
export function pubsubIq(client: XmppClient, to: string | undefined, type: 'get' | 'set', xmlns: string, ...children: Element[]): Promise<Element> {
  const attrs: Record<string, string> = { type };
  if (to) attrs.to = to;
  return client.iqCaller.request(xml('iq', attrs, xml('pubsub', { xmlns }, ...children)), 5000);
}

/** A submitted data form of `formType` with `fields` (arrays for multi-valued fields). */
export function submitForm(formType: string, fields: Record<string, string | string[]>): Element {
  return xml(
    'x',
    { xmlns: DATA_FORMS, type: 'submit' },
    xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, formType)),
    ...Object.entries(fields).map(([name, value]) => xml('field', { var: name }, ...(Array.isArray(value) ? value : [value]).map((v) => xml('value', {}, v)))),
  );
}

export const nodeConfig = (fields: Record<string, string | string[]>) => submitForm('http://jabber.org/protocol/pubsub#node_config', fields);
export const publishOptions = (fields: Record<string, string | string[]>) => submitForm('http://jabber.org/protocol/pubsub#publish-options', fields);

export function createNode(client: XmppClient, to: string, node?: string, config?: Record<string, string | string[]>): Promise<Element> {
  const children = [xml('create', node === undefined ? {} : { node })];
  if (config) children.push(xml('configure', {}, nodeConfig(config)));
  return pubsubIq(client, to, 'set', PUBSUB, ...children);
}

/** Publishes `payload` (an element) as one item; resolves with the item id the service reports. */
export async function publish(client: XmppClient, to: string | undefined, node: string, payload: Element | undefined, id?: string, options?: Record<string, string | string[]>): Promise<string> {
  const item = xml('item', id === undefined ? {} : { id }, ...(payload ? [payload] : []));
  const children = [xml('publish', { node }, item)];
  if (options) children.push(xml('publish-options', {}, publishOptions(options)));
  const result = await pubsubIq(client, to, 'set', PUBSUB, ...children);
  return result.getChild('pubsub', PUBSUB)!.getChild('publish')!.getChild('item')!.attrs.id;
}

export async function subscribe(client: XmppClient, to: string, node: string, jid = client.jid!.bare().toString()): Promise<Element> {
  const result = await pubsubIq(client, to, 'set', PUBSUB, xml('subscribe', { node, jid }));
  return result.getChild('pubsub', PUBSUB)!.getChild('subscription')!;
}

/** The items of a node: [id, payload text or element name] pairs, oldest first. */
export async function items(client: XmppClient, to: string | undefined, node: string, attrs: Record<string, string> = {}, ids: string[] = []): Promise<Element[]> {
  const result = await pubsubIq(client, to, 'get', PUBSUB, xml('items', { node, ...attrs }, ...ids.map((id) => xml('item', { id }))));
  return result.getChild('pubsub', PUBSUB)!.getChild('items')!.getChildren('item');
}

/** A simple payload: <entry xmlns='urn:example:entry'>text</entry>. */
export function entry(text: string): Element {
  return xml('entry', { xmlns: 'urn:example:entry' }, text);
}

/** The item of the next event notification for `node` (rejects after `ms`). */
export async function nextEvent(client: XmppClient, node: string, check: (items: Element) => boolean = () => true, ms?: number): Promise<Element> {
  const message = await nextStanza(
    client,
    (s) => {
      const itemsEl = s.is('message') ? s.getChild('event', PUBSUB_EVENT)?.getChild('items') : undefined;
      return itemsEl?.attrs.node === node && check(itemsEl);
    },
    ms,
  );
  return message;
}

/** True when `stanza` is an event notification (any kind) about `node`. */
export function isEventFor(stanza: Element, node: string): boolean {
  const event = stanza.is('message') ? stanza.getChild('event', PUBSUB_EVENT) : undefined;
  return Boolean(event?.getChildElements().some((c) => c.attrs.node === node));
}

/** The XEP-0060 error condition and its pubsub#errors condition of a rejected request. */
export async function pubsubErrorOf(request: Promise<unknown>): Promise<string> {
  try {
    await request;
  } catch (err) {
    const e = err as { condition?: string; application?: Element };
    const app = e.application?.attrs.xmlns === PUBSUB_ERRORS ? e.application : undefined;
    return app ? `${e.condition}/${app.name}` : String(e.condition ?? err);
  }
  return 'no error';
}

/** A form's values by field var. */
export function formValues(x: Element | undefined): Map<string, string[]> {
  const values = new Map<string, string[]>();
  for (const field of x?.getChildren('field') ?? []) values.set(field.attrs.var, field.getChildren('value').map((v) => v.getText()));
  return values;
}
