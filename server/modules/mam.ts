import { Element, parse as parseXml } from 'ltx';
import { StanzaError } from '../errors';
import { tryParseJID } from '../jid';
import type { ArchivedMessage, ArchiveFilter, ArchivePrefs, ArchiveStore } from '../storage/types';
import { buildDataForm, dataFormIn, readDataForm } from '../xml/data-form';
import { NS } from '../xml/ns';
import { DEFAULT_PREFS } from '../sm/archive';
import type { ServerModule } from './module';

/** Messages per page when the client names no <max/> [50], and the most it may ask for [250]. */
const DEFAULT_PAGE = 50;
const MAX_PAGE = 250;
/** Most ids in one `ids` query [250]. */
const MAX_IDS = 250;

/**
 * XEP-0313 Message Archive Management for user archives (urn:xmpp:mam:2 with #extended): the
 * query form (with, start, end, before-id, after-id, ids), RSM paging (XEP-0059), metadata, and
 * preferences. Messages are recorded by MessageService (see sm/archive.ts) in the shared database,
 * so every node pages the same archive.
 */
export const mam: ServerModule = ({ router, storage, messages, archive, remote }) => {
  if (!archive) return;
  messages.setArchive(archive);
  router.feature('account', NS.MAM);
  router.feature('account', NS.MAM_EXTENDED);

  router.iq('get', 'account', NS.MAM, 'query', ({ self }) => {
    if (!self) throw new StanzaError('forbidden', 'only the account itself reads its archive');
    return queryForm();
  });

  router.iq('set', 'account', NS.MAM, 'query', async ({ payload, self, to, session }) => {
    if (!self || !session) throw new StanzaError('forbidden', 'only the account itself reads its archive');
    // What this node has recorded but not yet written (it writes in batches) is in the answer.
    await archive.flush();
    return answerQuery(storage.archive, to.bareString(), payload, session.full, (message) => session.send(message));
  });

  router.iq('get', 'account', NS.MAM, 'metadata', async ({ self, to }) => {
    if (!self) throw new StanzaError('forbidden');
    await archive.flush();
    const metadata = new Element('metadata', { xmlns: NS.MAM });
    const { first, last } = await storage.archive.bounds(to.bareString());
    if (first && last) {
      metadata.c('start', { id: first.stanzaId, timestamp: first.at.toISOString() });
      metadata.c('end', { id: last.stanzaId, timestamp: last.at.toISOString() });
    }
    return metadata;
  });

  router.iq('get', 'account', NS.MAM, 'prefs', async ({ self, to }) => {
    if (!self) throw new StanzaError('forbidden');
    return prefsElement((await storage.archive.prefs(to.bareString())) ?? DEFAULT_PREFS);
  });

  router.iq('set', 'account', NS.MAM, 'prefs', async ({ self, to, payload }) => {
    if (!self) throw new StanzaError('forbidden');
    const mode = String(payload.attrs.default ?? '');
    if (mode !== 'always' && mode !== 'never' && mode !== 'roster') throw new StanzaError('bad-request', "default must be 'always', 'never' or 'roster'");
    const jids = (name: string) => (payload.getChild(name)?.getChildren('jid') ?? []).map((j) => {
      const jid = tryParseJID(j.getText().trim());
      if (!jid) throw new StanzaError('bad-request', `not a JID: ${j.getText()}`);
      return jid.bareString();
    });
    const prefs: ArchivePrefs = { default: mode, always: jids('always'), never: jids('never') };
    await storage.archive.setPrefs(to.bareString(), prefs);
    // Every node may have them cached (it checks messages to the user against them).
    archive.prefsChanged(to.bareString());
    remote.archivePrefsChanged(to.bareString());
    return prefsElement(prefs);
  });
};

/** The query form's fields (§4.1): what a query may fill in. */
const QUERY_FIELDS = [
  { var: 'with', type: 'jid-single' },
  { var: 'start', type: 'text-single' },
  { var: 'end', type: 'text-single' },
  { var: 'before-id', type: 'text-single' },
  { var: 'after-id', type: 'text-single' },
  // Any ids: the form cannot list them, so XEP-0313 asks for XEP-0122's <open/> instead.
  { var: 'ids', type: 'list-multi', open: true },
] as const;
const QUERY_FIELD_NAMES: ReadonlySet<string> = new Set(QUERY_FIELDS.map((f) => f.var));

/** §4.1.1: the query form a client can fill in. */
export function queryForm(): Element {
  const query = new Element('query', { xmlns: NS.MAM });
  query.cnode(buildDataForm('form', NS.MAM, QUERY_FIELDS.map((f) => ({ ...f, values: [] }))));
  return query;
}

/**
 * Runs a query on `archive` (a user's bare JID, or a room's): the results go to `requester` through
 * `send`, as messages from the archive, before the returned <fin/> (§4.2). For the MAM module and
 * the MUC component alike.
 */
export async function answerQuery(store: ArchiveStore, archive: string, payload: Element, requester: string, send: (message: Element) => void): Promise<Element> {
  const filter = readFilter(payload);
  const set = payload.getChild('set', NS.RSM);
  const max = Math.min(readMax(set), MAX_PAGE);
  const before = set?.getChild('before');
  const page = {
    max,
    after: set?.getChildText('after') || undefined,
    before: before ? before.getText() || (true as const) : undefined,
  };
  const result = await store.query(archive, filter, page);
  if (result === 'item-not-found') throw new StanzaError('item-not-found', 'no message with that id in this archive');
  const queryid = payload.attrs.queryid as string | undefined;
  const messagesOut = payload.getChild('flip-page') ? [...result.messages].reverse() : result.messages;
  for (const message of messagesOut) send(resultMessage(requester, archive, queryid, message));
  const fin = new Element('fin', { xmlns: NS.MAM });
  if (result.complete) fin.attrs.complete = 'true';
  const rsm = fin.c('set', { xmlns: NS.RSM });
  if (messagesOut.length > 0) {
    rsm.c('first').t(messagesOut[0].stanzaId);
    rsm.c('last').t(messagesOut[messagesOut.length - 1].stanzaId);
  }
  rsm.c('count').t(String(result.count));
  return fin;
}

function readMax(set: Element | undefined): number {
  const text = set?.getChildText('max');
  if (text === undefined || text === null) return DEFAULT_PAGE;
  const max = Number(text.trim());
  if (!Number.isInteger(max) || max < 0) throw new StanzaError('bad-request', 'RSM <max/> must be a whole number');
  return max;
}

function readFilter(query: Element): ArchiveFilter {
  const x = dataFormIn(query);
  const filter: ArchiveFilter = {};
  if (!x) return filter;
  const form = readDataForm(x);
  if (form.formType !== undefined && form.formType !== NS.MAM) throw new StanzaError('bad-request', `FORM_TYPE must be ${NS.MAM}`);
  // XEP-0313: a field the archive does not know is refused (feature-not-implemented), not ignored: a client that
  // filters by it (a full-text search, include-groupchat) must not take the whole archive for a match.
  for (const name of form.fields.keys()) {
    if (!QUERY_FIELD_NAMES.has(name)) throw new StanzaError('feature-not-implemented', `no query field '${name}' (the query form lists those there are)`);
  }
  const one = (name: string) => form.fields.get(name)?.[0]?.trim() || undefined;
  const withValue = one('with');
  if (withValue !== undefined) {
    const jid = tryParseJID(withValue);
    if (!jid) throw new StanzaError('bad-request', `'with' is not a JID: ${withValue}`);
    filter.withJid = jid.bareString();
    if (jid.resource) filter.withResource = jid.resource;
  }
  for (const name of ['start', 'end'] as const) {
    const value = one(name);
    if (value === undefined) continue;
    const date = new Date(value);
    if (Number.isNaN(date.getTime())) throw new StanzaError('bad-request', `'${name}' is not an XEP-0082 date-time: ${value}`);
    filter[name] = date;
  }
  filter.afterId = one('after-id');
  filter.beforeId = one('before-id');
  const ids = form.fields.get('ids')?.map((id) => id.trim()).filter((id) => id !== '');
  if (ids && ids.length > 0) {
    if (ids.length > MAX_IDS) throw new StanzaError('policy-violation', `at most ${MAX_IDS} ids per query`);
    filter.ids = ids;
  }
  return filter;
}

/** §4.2: <message><result queryid id><forwarded><delay stamp/><message …/></forwarded></result></message>. */
function resultMessage(requester: string, archive: string, queryid: string | undefined, message: ArchivedMessage): Element {
  const out = new Element('message', { from: archive, to: requester });
  const result = out.c('result', queryid ? { xmlns: NS.MAM, queryid, id: message.stanzaId } : { xmlns: NS.MAM, id: message.stanzaId });
  const forwarded = result.c('forwarded', { xmlns: NS.FORWARD });
  forwarded.c('delay', { xmlns: NS.DELAY, stamp: message.at.toISOString() });
  const stanza = parseXml(message.stanza) as Element;
  if (!stanza.attrs.xmlns) stanza.attrs.xmlns = NS.CLIENT;
  forwarded.cnode(stanza);
  return out;
}

function prefsElement(prefs: ArchivePrefs): Element {
  const element = new Element('prefs', { xmlns: NS.MAM, default: prefs.default });
  const always = element.c('always');
  for (const jid of prefs.always) always.c('jid').t(jid);
  const never = element.c('never');
  for (const jid of prefs.never) never.c('jid').t(jid);
  return element;
}
