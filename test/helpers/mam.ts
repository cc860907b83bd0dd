import type { Element } from 'ltx';
import { xml, type XmppClient } from './server';

/** A client's side of XEP-0313 queries. */

export const MAM = 'urn:xmpp:mam:2';
const RSM = 'http://jabber.org/protocol/rsm';

export interface Page {
  messages: { id: string; stamp: string; from: string; to: string; body: string | null; queryid?: string }[];
  complete: boolean;
  count: number;
  first?: string;
  last?: string;
}

/** A MAM query as clients send it: results are collected as they come, until the IQ result. */
export async function query(client: XmppClient, opts: { fields?: Record<string, string | string[]>; rsm?: Element[]; to?: string; flip?: boolean } = {}): Promise<Page> {
  const queryid = `q${Math.random().toString(36).slice(2)}`;
  const results: Element[] = [];
  const onStanza = (s: Element) => {
    const result = s.is('message') ? s.getChild('result', MAM) : undefined;
    if (result?.attrs.queryid === queryid) results.push(result);
  };
  client.on('stanza', onStanza);
  const children: Element[] = [];
  if (opts.fields) {
    const x = xml('x', { xmlns: 'jabber:x:data', type: 'submit' }, xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, MAM)));
    for (const [name, value] of Object.entries(opts.fields)) x.append(xml('field', { var: name }, ...[value].flat().map((v) => xml('value', {}, v))));
    children.push(x);
  }
  if (opts.rsm) children.push(xml('set', { xmlns: RSM }, ...opts.rsm));
  if (opts.flip) children.push(xml('flip-page'));
  try {
    const reply = await client.iqCaller.request(xml('iq', { type: 'set', ...(opts.to ? { to: opts.to } : {}) }, xml('query', { xmlns: MAM, queryid }, ...children)));
    const fin = reply.getChild('fin', MAM)!;
    const set = fin.getChild('set', RSM)!;
    return {
      messages: results.map((r) => {
        const forwarded = r.getChild('forwarded', 'urn:xmpp:forward:0')!;
        const message = forwarded.getChild('message')!;
        return { id: r.attrs.id, stamp: forwarded.getChild('delay')!.attrs.stamp, from: message.attrs.from, to: message.attrs.to, body: message.getChildText('body'), queryid: r.attrs.queryid };
      }),
      complete: fin.attrs.complete === 'true',
      count: Number(set.getChildText('count')),
      first: set.getChildText('first') ?? undefined,
      last: set.getChildText('last') ?? undefined,
    };
  } finally {
    client.off('stanza', onStanza);
  }
}

