import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Element, parse as parseXml } from 'ltx';
import { deriveScramCredentialsAsync } from '../server/c2s/sasl/scram';
import { tryParseJID } from '../server/jid';
import { UserExistsError, type RosterItem, type ScramCredential, type ScramCredentials, type ScramHash, type Storage, type Subscription } from '../server/storage/types';

/**
 * XEP-0227 (Portable Import/Export Format): accounts with their SCRAM credentials, rosters with
 * pending subscription requests, vCards, private XML and offline messages, as one file that
 * ejabberd (`ejabberdctl import_piefxis`), Prosody (mod_storage_xep0227) and Tigase can read, and
 * the files they write read back.
 */

/** XEP-0227 1.0's namespace, and the one older exporters (ejabberd) still write. */
export const PIE = 'urn:xmpp:pie:0';
const PIE_OLD = 'http://www.xmpp.org/extensions/xep-0227.html#ns';
const PIE_SCRAM = 'urn:xmpp:pie:0#scram';
const XINCLUDE = 'http://www.w3.org/2001/XInclude';
const ROSTER = 'jabber:iq:roster';
const PRIVATE = 'jabber:iq:private';
const VCARD = 'vcard-temp';
const CLIENT = 'jabber:client';

/** How deep XIncludes may nest (server, host, user files) [8]. */
const MAX_INCLUDE_DEPTH = 8;
const SUBSCRIPTIONS: readonly Subscription[] = ['none', 'to', 'from', 'both'];
const MECHANISMS: Record<string, ScramHash> = { 'SCRAM-SHA-1': 'SHA-1', 'SCRAM-SHA-256': 'SHA-256' };

/** The `<server-data/>` document of `domains`' accounts. */
export async function exportPie(storage: Storage, domains: string[]): Promise<{ document: string; users: number }> {
  const root = new Element('server-data', { xmlns: PIE });
  let users = 0;
  for (const domain of domains) {
    const host = root.c('host', { jid: domain });
    for (const jid of await storage.users.list(domain)) {
      const record = await storage.users.get(jid);
      if (!record) continue;
      users++;
      const user = host.c('user', { name: jid.slice(0, jid.lastIndexOf('@')) });
      for (const [mechanism, hash] of Object.entries(MECHANISMS)) {
        const c = record.credentials[hash];
        if (!c) continue;
        const scram = user.c('scram-credentials', { xmlns: PIE_SCRAM, mechanism });
        scram.c('iter-count').t(String(c.iterations));
        scram.c('salt').t(c.salt);
        scram.c('server-key').t(c.serverKey);
        scram.c('stored-key').t(c.storedKey);
      }
      const roster = user.c('query', { xmlns: ROSTER });
      for (const item of await storage.roster.getItems(jid)) {
        const attrs: Record<string, string> = { jid: item.jid, subscription: item.subscription };
        if (item.name) attrs.name = item.name;
        if (item.ask) attrs.ask = 'subscribe';
        if (item.approved) attrs.approved = 'true';
        const el = roster.c('item', attrs);
        for (const group of item.groups) el.c('group').t(group);
      }
      // XEP-0227 §4.8 (0.3): incoming subscription requests, as the presence the user has not answered.
      for (const { contact, stanzaXml } of await storage.roster.getPendingIn(jid)) {
        const presence = tryParse(stanzaXml) ?? new Element('presence', { type: 'subscribe' });
        presence.attrs = { ...presence.attrs, xmlns: CLIENT, type: 'subscribe', from: contact, to: jid };
        user.cnode(presence);
      }
      const vcard = await storage.vcards.get(jid);
      const vcardElement = vcard ? tryParse(vcard) : undefined;
      if (vcardElement) user.cnode(vcardElement);
      const stored = await storage.privateXml.all(jid);
      if (stored.length > 0) {
        const query = user.c('query', { xmlns: PRIVATE });
        for (const { xml } of stored) {
          const el = tryParse(xml);
          if (el) query.cnode(el);
        }
      }
      const offline = await storage.offline.fetch(jid);
      if (offline.length > 0) {
        const queue = user.c('offline-messages');
        for (const message of offline) {
          const el = tryParse(message.stanzaXml);
          if (!el) continue;
          el.attrs.xmlns = CLIENT;
          queue.cnode(el);
        }
      }
    }
  }
  return { document: `<?xml version='1.0' encoding='UTF-8'?>\n${root.toString()}\n`, users };
}

/** What an import did. */
export interface ImportReport {
  imported: string[];
  /** Accounts that exist here already: left as they are. */
  skipped: string[];
  /** Hosts in the file that this server does not serve. */
  otherHosts: string[];
  /** Accounts imported with one SCRAM hash only (SCRAM-SHA-256 needs a new password for them). */
  oneHashOnly: string[];
  /** Items that could not be taken, with why (the rest of the account is imported). */
  problems: string[];
}

/**
 * Imports a XEP-0227 file (either namespace, XIncludes followed relative to each file) into
 * `storage`, for the hosts in `served`. Existing accounts are never touched.
 */
export async function importPie(
  storage: Storage,
  file: string,
  served: readonly string[],
  opts: { scramIterations: number; offlineLimit: number },
): Promise<ImportReport> {
  const report: ImportReport = { imported: [], skipped: [], otherHosts: [], oneHashOnly: [], problems: [] };
  const root = load(file, 0);
  if (root.name !== 'server-data') throw new Error(`${file}: not a XEP-0227 file (the root is <${root.name}>, not <server-data>)`);
  for (const host of childrenOf(root, 'host')) {
    const domain = String(host.attrs.jid ?? '').toLowerCase();
    if (!served.includes(domain)) {
      report.otherHosts.push(domain);
      continue;
    }
    for (const user of childrenOf(host, 'user')) await importUser(storage, domain, user, opts, report);
  }
  return report;
}

async function importUser(storage: Storage, domain: string, user: Element, opts: { scramIterations: number; offlineLimit: number }, report: ImportReport): Promise<void> {
  const jid = tryParseJID(`${user.attrs.name ?? ''}@${domain}`);
  if (!jid || !jid.local || jid.resource) {
    report.problems.push(`user "${user.attrs.name}" of ${domain}: not a valid account name`);
    return;
  }
  const bare = jid.toString();
  const credentials = await credentialsOf(user, opts.scramIterations);
  if (!credentials) {
    report.problems.push(`${bare}: no password or SCRAM credential it could log in with; not imported`);
    return;
  }
  try {
    await storage.users.create(bare, credentials);
  } catch (err) {
    if (err instanceof UserExistsError) {
      report.skipped.push(bare);
      return;
    }
    throw err;
  }
  report.imported.push(bare);
  if (!credentials['SHA-256'] || !credentials['SHA-1']) report.oneHashOnly.push(bare);

  for (const child of user.getChildElements()) {
    const ns = child.attrs.xmlns;
    try {
      if (child.name === 'query' && ns === ROSTER) {
        for (const item of child.getChildren('item')) await storage.roster.setItem(bare, rosterItem(item));
      } else if (child.name === 'vCard' && ns === VCARD) {
        await storage.vcards.set(bare, child.toString());
      } else if (child.name === 'query' && ns === PRIVATE) {
        for (const stored of child.getChildElements()) {
          if (stored.attrs.xmlns) await storage.privateXml.set(bare, stored.attrs.xmlns, stored.toString());
        }
      } else if (child.name === 'offline-messages') {
        for (const message of child.getChildren('message')) {
          message.attrs.xmlns = CLIENT;
          message.attrs.to ??= bare;
          await storage.offline.store(bare, message.toString(), opts.offlineLimit);
        }
      } else if (child.name === 'presence' && child.attrs.type === 'subscribe' && child.attrs.from) {
        const from = tryParseJID(child.attrs.from);
        if (from) await storage.roster.addPendingIn(bare, from.bareString(), new Element('presence', { xmlns: CLIENT, type: 'subscribe', from: from.bareString(), to: bare }).toString());
      }
    } catch (err) {
      report.problems.push(`${bare}: ${child.name} ${ns ?? ''}: ${(err as Error).message}`);
    }
  }
}

/** The account's credentials: SCRAM data as exported (XEP-0227 1.1), else derived from a password attribute. */
async function credentialsOf(user: Element, iterations: number): Promise<Partial<ScramCredentials> | undefined> {
  const found: Partial<ScramCredentials> = {};
  for (const scram of user.getChildren('scram-credentials', PIE_SCRAM)) {
    const hash = MECHANISMS[String(scram.attrs.mechanism ?? '').toUpperCase()];
    const credential: ScramCredential = {
      iterations: Number(scram.getChildText('iter-count')),
      salt: scram.getChildText('salt')?.trim() ?? '',
      serverKey: scram.getChildText('server-key')?.trim() ?? '',
      storedKey: scram.getChildText('stored-key')?.trim() ?? '',
    };
    const usable = hash && Number.isInteger(credential.iterations) && credential.iterations > 0 ? undoubled(credential, hash) : undefined;
    if (hash && usable) found[hash] = usable;
  }
  // A plaintext password gives both credentials; never stored as such.
  const password = user.attrs.password as string | undefined;
  if (password) return { ...(await deriveScramCredentialsAsync(password, iterations)), ...found };
  return found['SHA-1'] || found['SHA-256'] ? found : undefined;
}

/** Digest length of each hash: the size of a stored or server key [RFC 5802]. */
const KEY_BYTES: Record<ScramHash, number> = { 'SHA-1': 20, 'SHA-256': 32 };

/**
 * The credential with base64 values as RFC 5802 keys are, or undefined when they are not keys.
 * ejabberd (23.01 at least) writes each value base64-encoded twice; keys decoded once to base64
 * text of the digest's size are taken from there, and the salt with them.
 */
function undoubled(c: ScramCredential, hash: ScramHash): ScramCredential | undefined {
  const isKey = (b64: string) => /^[A-Za-z0-9+/]+={0,2}$/.test(b64) && Buffer.from(b64, 'base64').length === KEY_BYTES[hash];
  if (!c.salt) return undefined;
  if (isKey(c.serverKey) && isKey(c.storedKey)) return c;
  const once = (b64: string) => Buffer.from(b64, 'base64').toString('latin1');
  const inner = { ...c, salt: once(c.salt), serverKey: once(c.serverKey), storedKey: once(c.storedKey) };
  return isKey(inner.serverKey) && isKey(inner.storedKey) && /^[A-Za-z0-9+/]+={0,2}$/.test(inner.salt) ? inner : undefined;
}

function rosterItem(item: Element): RosterItem {
  const contact = tryParseJID(String(item.attrs.jid ?? ''));
  if (!contact) throw new Error(`roster item "${item.attrs.jid}" is not a JID`);
  const subscription = SUBSCRIPTIONS.includes(item.attrs.subscription) ? (item.attrs.subscription as Subscription) : 'none';
  return {
    jid: contact.toString(),
    name: item.attrs.name || undefined,
    subscription,
    ask: item.attrs.ask === 'subscribe' || undefined,
    approved: item.attrs.approved === 'true' || item.attrs.approved === '1' || undefined,
    groups: [...new Set(item.getChildren('group').map((g) => g.getText()).filter((g) => g !== ''))],
  };
}

/** Children named `name` in either XEP-0227 namespace (an element without one inherits its parent's). */
function childrenOf(parent: Element, name: string): Element[] {
  return parent.getChildElements().filter((c) => c.name === name && (c.attrs.xmlns === undefined || c.attrs.xmlns === PIE || c.attrs.xmlns === PIE_OLD));
}

/** Parses `file` and replaces each XInclude (relative href, no parse or xpointer) with the file it names. */
function load(file: string, depth: number): Element {
  if (depth > MAX_INCLUDE_DEPTH) throw new Error(`${file}: XIncludes nest deeper than ${MAX_INCLUDE_DEPTH}`);
  let root: Element;
  try {
    root = parseXml(readFileSync(file, 'utf8')) as Element;
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`);
  }
  expandIncludes(root, path.dirname(file), depth);
  return root;
}

function expandIncludes(element: Element, dir: string, depth: number): void {
  element.children = element.children.map((child) => {
    if (typeof child === 'string') return child;
    if (child.name === 'xi:include' || (child.getName() === 'include' && child.getNS() === XINCLUDE)) {
      const href = child.attrs.href as string | undefined;
      if (!href || child.attrs.parse || child.attrs.xpointer) throw new Error(`an XInclude without a plain relative href: ${child.toString()}`);
      const included = load(path.resolve(dir, href), depth + 1);
      included.parent = element;
      // An included element inherits nothing: a missing xmlns means the XEP-0227 namespace.
      return included;
    }
    expandIncludes(child, dir, depth);
    return child;
  });
}

function tryParse(xml: string): Element | undefined {
  try {
    return parseXml(xml) as Element;
  } catch {
    return undefined;
  }
}
