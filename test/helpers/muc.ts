import type { Element } from 'ltx';
import type { TapTest } from './databases';
import type { XmppClient } from './server';
import { nextStanza, xml } from './server';

/** Multi-user chat (XEP-0045) as a client sees it: joining, configuring, administering rooms. */

export const MUC_ARGS = ['--comp-name-1=muc', '--comp-class-1=muc'];
export const SERVICE = 'muc.localhost';
export const NS_MUC = 'http://jabber.org/protocol/muc';
export const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
export const NS_MUC_ADMIN = 'http://jabber.org/protocol/muc#admin';
export const NS_MUC_OWNER = 'http://jabber.org/protocol/muc#owner';
export const NS_DATA = 'jabber:x:data';
export const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';
export const NS_DISCO_ITEMS = 'http://jabber.org/protocol/disco#items';

/** The status codes of a room presence or message, sorted. */
export function statusCodes(stanza: Element): number[] {
  const x = stanza.getChild('x', NS_MUC_USER);
  return (x?.getChildren('status') ?? []).map((s) => Number(s.attrs.code)).sort((a, b) => a - b);
}

/** The <item/> of a room presence. */
export function mucItem(stanza: Element): Element | undefined {
  return stanza.getChild('x', NS_MUC_USER)?.getChild('item');
}

/** True for stanzas from the room itself or one of its occupants. */
export function isFromRoom(stanza: Element, room: string): boolean {
  const from = stanza.attrs.from as string | undefined;
  return from === room || (from?.startsWith(`${room}/`) ?? false);
}

export function roomOf(roomNick: string): string {
  return roomNick.slice(0, roomNick.indexOf('/'));
}

export interface JoinResult {
  /** The self-presence (status 110). */
  self: Element;
  /** Other occupants' presence, as received before the self-presence. */
  presences: Element[];
  /** Discussion history (messages with a body before the subject). */
  history: Element[];
  /** The subject message (the last thing sent on entering). */
  subject: Element;
}

export interface JoinOptions {
  password?: string;
  history?: Record<string, string>;
  /** Send <x xmlns='http://jabber.org/protocol/muc'/> [true]. */
  muc?: boolean;
  status?: string;
  ms?: number;
}

function joinPresence(roomNick: string, opts: JoinOptions): Element {
  const children: Element[] = [];
  if (opts.status) children.push(xml('status', {}, opts.status));
  if (opts.muc ?? true) {
    const x: Element[] = [];
    if (opts.password !== undefined) x.push(xml('password', {}, opts.password));
    if (opts.history) x.push(xml('history', opts.history));
    children.push(xml('x', { xmlns: NS_MUC }, ...x));
  }
  return xml('presence', { to: roomNick }, ...children);
}

/**
 * Enters room/nick and resolves with what the room sends, up to the subject (XEP-0045 §7.2: others'
 * presence, self-presence, history, subject). Rejects with the error condition when refused.
 */
export function join(client: XmppClient, roomNick: string, opts: JoinOptions = {}): Promise<JoinResult> {
  const room = roomOf(roomNick);
  return new Promise((resolve, reject) => {
    const presences: Element[] = [];
    const history: Element[] = [];
    let self: Element | undefined;
    const timer = setTimeout(() => {
      client.off('stanza', onStanza);
      reject(new Error(`timed out joining ${roomNick} (self-presence ${self ? 'seen' : 'not seen'})`));
    }, opts.ms ?? 5000);
    const done = (err?: Error) => {
      clearTimeout(timer);
      client.off('stanza', onStanza);
      if (err) reject(err);
    };
    const onStanza = (stanza: Element) => {
      if (!isFromRoom(stanza, room)) return;
      if (stanza.is('presence') && stanza.attrs.type === 'error') {
        const condition = stanza.getChild('error')?.getChildElements()[0]?.name ?? 'unknown';
        done(new Error(condition));
        return;
      }
      if (stanza.is('presence') && !stanza.attrs.type) {
        if (statusCodes(stanza).includes(110)) self = stanza;
        else if (!self) presences.push(stanza);
        return;
      }
      if (stanza.is('message') && stanza.attrs.type === 'groupchat' && self) {
        if (stanza.getChild('subject') && !stanza.getChild('body')) {
          done();
          resolve({ self, presences, history, subject: stanza });
        } else if (stanza.getChild('body')) {
          history.push(stanza);
        }
      }
    };
    client.on('stanza', onStanza);
    client.send(joinPresence(roomNick, opts)).catch((err: Error) => done(err));
  });
}

/** Resolves with the error condition of a refused join. */
export async function joinError(client: XmppClient, roomNick: string, opts: JoinOptions = {}): Promise<string> {
  try {
    await join(client, roomNick, opts);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error(`joining ${roomNick} was not refused`);
}

/** Leaves and resolves with the self unavailable presence. */
export async function leave(client: XmppClient, roomNick: string, status?: string): Promise<Element> {
  const gone = nextStanza(client, (s) => s.is('presence') && s.attrs.from === roomNick && s.attrs.type === 'unavailable');
  await client.send(xml('presence', { to: roomNick, type: 'unavailable' }, ...(status ? [xml('status', {}, status)] : [])));
  return gone;
}

/** A data form of type submit with the given fields (FORM_TYPE muc#roomconfig). */
export function configForm(fields: Record<string, string | string[]> = {}): Element {
  return xml(
    'x',
    { xmlns: NS_DATA, type: 'submit' },
    xml('field', { var: 'FORM_TYPE' }, xml('value', {}, 'http://jabber.org/protocol/muc#roomconfig')),
    ...Object.entries(fields).map(([name, value]) => xml('field', { var: name }, ...(Array.isArray(value) ? value : [value]).map((v) => xml('value', {}, v)))),
  );
}

/** Submits the owner's configuration form (XEP-0045 §10.2); an empty set of fields is an instant room. */
export function configure(client: XmppClient, room: string, fields?: Record<string, string | string[]>): Promise<Element> {
  const form = fields === undefined ? xml('x', { xmlns: NS_DATA, type: 'submit' }) : configForm(fields);
  return client.iqCaller.request(xml('iq', { type: 'set', to: room }, xml('query', { xmlns: NS_MUC_OWNER }, form)));
}

/** Creates room/nick as its owner: enter (201, locked), then submit `fields` (none: instant room). */
export async function createRoom(client: XmppClient, roomNick: string, fields?: Record<string, string | string[]>): Promise<JoinResult> {
  const joined = await join(client, roomNick);
  if (!statusCodes(joined.self).includes(201)) throw new Error(`${roomNick} already existed`);
  await configure(client, roomOf(roomNick), fields);
  return joined;
}

/** A muc#admin set of `items`; resolves with the result, rejects with the error. */
export function adminSet(client: XmppClient, room: string, ...items: Element[]): Promise<Element> {
  return client.iqCaller.request(xml('iq', { type: 'set', to: room }, xml('query', { xmlns: NS_MUC_ADMIN }, ...items)));
}

/** A muc#admin get of one list (affiliation= or role=); resolves with the items. */
export async function adminGet(client: XmppClient, room: string, attrs: Record<string, string>): Promise<Element[]> {
  const result = await client.iqCaller.request(xml('iq', { type: 'get', to: room }, xml('query', { xmlns: NS_MUC_ADMIN }, xml('item', attrs))));
  return result.getChild('query', NS_MUC_ADMIN)?.getChildren('item') ?? [];
}

export function discoInfo(client: XmppClient, to: string): Promise<Element> {
  return client.iqCaller.request(xml('iq', { type: 'get', to }, xml('query', { xmlns: NS_DISCO_INFO })));
}

export async function discoItems(client: XmppClient, to: string): Promise<Element[]> {
  const result = await client.iqCaller.request(xml('iq', { type: 'get', to }, xml('query', { xmlns: NS_DISCO_ITEMS })));
  return result.getChild('query', NS_DISCO_ITEMS)?.getChildren('item') ?? [];
}

/** The features of a disco#info result. */
export function features(info: Element): string[] {
  return (info.getChild('query', NS_DISCO_INFO)?.getChildren('feature') ?? []).map((f) => f.attrs.var as string);
}

/** Resolves with the error condition of a request that must fail. */
export async function errorOf(request: Promise<unknown>): Promise<string> {
  try {
    await request;
  } catch (err) {
    return (err as { condition?: string }).condition ?? (err as Error).message;
  }
  throw new Error('the request succeeded');
}

/** A groupchat message to the room. */
export function say(client: XmppClient, room: string, body: string, id?: string): Promise<void> {
  return client.send(xml('message', { to: room, type: 'groupchat', ...(id ? { id } : {}) }, xml('body', {}, body)));
}

/** The next groupchat message with `body` that the client gets from the room. */
export function heard(client: XmppClient, room: string, body: string, ms?: number): Promise<Element> {
  return nextStanza(client, (s) => s.is('message') && s.attrs.type === 'groupchat' && isFromRoom(s, room) && s.getChildText('body') === body, ms);
}

/** The next presence from room/nick of `type` (undefined: available). */
export function presenceOf(client: XmppClient, roomNick: string, type?: string, ms?: number): Promise<Element> {
  return nextStanza(client, (s) => s.is('presence') && s.attrs.from === roomNick && s.attrs.type === type, ms);
}

/** The next error stanza (any kind) from `from`; resolves with its condition. */
export async function nextError(client: XmppClient, from: string, ms?: number): Promise<string> {
  const error = await nextStanza(client, (s) => s.attrs.type === 'error' && s.attrs.from === from, ms);
  return error.getChild('error')?.getChildElements()[0]?.name ?? 'unknown';
}

/**
 * A room created by `owner` (as Hilda) that `guest` (as Gus, of another server) joins: each sees
 * the other, and groupchat goes both ways. What federation with rooms must do.
 */
export async function guestJoinsAndChats(t: TapTest, owner: XmppClient, guest: XmppClient, room: string, ms = 30_000): Promise<void> {
  await createRoom(owner, `${room}/Hilda`);
  const ownerSeesGuest = nextStanza(owner, (s: Element) => s.is('presence') && s.attrs.from === `${room}/Gus` && !s.attrs.type, ms);
  const joined = await join(guest, `${room}/Gus`, { ms });
  t.same(joined.presences.map((p) => p.attrs.from), [`${room}/Hilda`], 'the remote user finds our user in the room');
  await ownerSeesGuest;
  const heardByGuest = nextStanza(guest, (s: Element) => s.is('message') && s.attrs.type === 'groupchat' && s.getChildText('body') === 'welcome', ms);
  await say(owner, room, 'welcome');
  t.equal((await heardByGuest).attrs.from, `${room}/Hilda`, 'our user is heard');
  const heardByOwner = nextStanza(owner, (s: Element) => s.is('message') && s.attrs.type === 'groupchat' && s.getChildText('body') === 'thanks', ms);
  await say(guest, room, 'thanks');
  t.equal((await heardByOwner).attrs.from, `${room}/Gus`, 'groupchat both ways');
}
