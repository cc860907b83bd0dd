import { createHash } from 'node:crypto';
import { Element } from 'ltx';
import type { JID } from '../jid';
import type { Logger } from '../log';
import type { CapsStore } from '../storage/caps-store';
import { NS } from '../xml/ns';
import type { ServerRequests } from './server-requests';
import type { Session } from './session';

/** Verified ver strings kept in memory per node; the oldest are forgotten first [10000]. */
const MEMORY_LIMIT = 10_000;

/** XEP-0115 §5 hash names (IANA) we verify, with Node's name for them; MD5 is too weak to trust. */
const HASHES: Readonly<Record<string, string>> = { 'sha-1': 'sha1', 'sha-224': 'sha224', 'sha-256': 'sha256', 'sha-384': 'sha384', 'sha-512': 'sha512' };

/** The `<c xmlns='http://jabber.org/protocol/caps'/>` of a presence (XEP-0115 §4). */
export interface CapsAnnouncement {
  hash: string;
  node: string;
  ver: string;
}

export function capsOf(presence: Element | undefined): CapsAnnouncement | undefined {
  const c = presence?.getChild('c', NS.CAPS);
  const { hash, node, ver } = (c?.attrs ?? {}) as Record<string, string | undefined>;
  if (!hash || !node || !ver) return undefined; // legacy caps (no hash) cannot be verified
  return { hash, node, ver };
}

/**
 * XEP-0115 §5.1: the verification string of a disco#info result, or undefined when the result is
 * ill-formed (§5.4 3.3: duplicate identities, features or forms).
 */
export function verificationString(query: Element): string | undefined {
  const identities = query.getChildren('identity').map((i) => {
    const a = i.attrs as Record<string, string | undefined>;
    return { key: [a.category ?? '', a.type ?? '', a['xml:lang'] ?? ''], text: `${a.category ?? ''}/${a.type ?? ''}/${a['xml:lang'] ?? ''}/${a.name ?? ''}` };
  });
  if (new Set(identities.map((i) => i.text)).size !== identities.length) return undefined;
  identities.sort((x, y) => compareKeys(x.key, y.key) || compare(x.text, y.text));
  const features = query.getChildren('feature').map((f) => String(f.attrs.var ?? ''));
  if (new Set(features).size !== features.length) return undefined;
  features.sort(compare);

  const forms: { type: string; fields: { name: string; values: string[] }[] }[] = [];
  for (const x of query.getChildren('x', NS.DATA_FORMS)) {
    const fields = x.getChildren('field');
    const formType = fields.find((f) => f.attrs.var === 'FORM_TYPE');
    // §5.4 3.6: a FORM_TYPE that is not hidden: ignore the form; forms without one are ignored too.
    if (!formType || (formType.attrs.type !== undefined && formType.attrs.type !== 'hidden')) continue;
    const typeValues = new Set(formType.getChildren('value').map((v) => v.getText()));
    if (typeValues.size !== 1) return undefined;
    const others = fields
      .filter((f) => f.attrs.var !== 'FORM_TYPE')
      .map((f) => ({ name: String(f.attrs.var ?? ''), values: f.getChildren('value').map((v) => v.getText()).sort(compare) }))
      .sort((a, b) => compare(a.name, b.name));
    forms.push({ type: [...typeValues][0], fields: others });
  }
  if (new Set(forms.map((f) => f.type)).size !== forms.length) return undefined;
  forms.sort((a, b) => compare(a.type, b.type));

  let s = '';
  for (const identity of identities) s += `${identity.text}<`;
  for (const feature of features) s += `${feature}<`;
  for (const form of forms) {
    s += `${form.type}<`;
    for (const field of form.fields) s += `${field.name}<${field.values.map((v) => `${v}<`).join('')}`;
  }
  return s;
}

/** XEP-0115 §5.4 3.7: does the result hash to the announced ver? */
export function verifyCaps(query: Element, hash: string, ver: string): boolean {
  const algorithm = HASHES[hash];
  const s = verificationString(query);
  if (!algorithm || s === undefined) return false;
  return createHash(algorithm).update(s, 'utf8').digest('base64') === ver;
}

/**
 * Which disco#info features a resource has, from its XEP-0115 caps: verified ver -> features, in
 * memory and in the database every node shares. An unknown ver is learned by asking the first
 * local resource that announces it (§6.3), and trusted only when the answer hashes to it (§5.4).
 */
export class EntityCapabilities {
  private readonly known = new Map<string, ReadonlySet<string>>();
  private readonly learning = new Map<string, Promise<ReadonlySet<string> | undefined>>();

  constructor(
    private readonly store: CapsStore,
    private readonly requests: ServerRequests,
    private readonly logger: Logger,
  ) {}

  /** The features of a local session's announced caps, if already verified here (no I/O: delivery path). */
  featuresOf(session: Session): ReadonlySet<string> | undefined {
    const caps = capsOf(session.presence);
    return caps && this.known.get(caps.ver);
  }

  /** The features of a verified ver, if known here (no I/O). */
  featuresOfVer(ver: string): ReadonlySet<string> | undefined {
    return this.known.get(ver);
  }

  /** Makes the ver `session` announced known here: from memory, the database, or by asking the session. */
  async learn(session: Session): Promise<ReadonlySet<string> | undefined> {
    const caps = capsOf(session.presence);
    if (!caps) return undefined;
    return this.learnVer(caps, session.full, (query) => this.requests.request(session, session.jid.domain, query));
  }

  /**
   * The same for an entity of another server (a contact's client, XEP-0163 §6.1 across domains):
   * asked over s2s from `asker`, one of our users it sent its presence to.
   */
  learnRemote(caps: CapsAnnouncement, entity: JID, asker: JID): Promise<ReadonlySet<string> | undefined> {
    return this.learnVer(caps, entity.toString(), (query) => this.requests.requestRemote(entity, asker, query));
  }

  private learnVer(caps: CapsAnnouncement, who: string, ask: (query: Element) => Promise<Element>): Promise<ReadonlySet<string> | undefined> {
    const known = this.known.get(caps.ver);
    if (known) return Promise.resolve(known);
    let learning = this.learning.get(caps.ver);
    if (!learning) {
      learning = this.fetch(caps, who, ask).finally(() => this.learning.delete(caps.ver));
      this.learning.set(caps.ver, learning);
    }
    return learning;
  }

  private async fetch(caps: CapsAnnouncement, who: string, ask: (query: Element) => Promise<Element>): Promise<ReadonlySet<string> | undefined> {
    const stored = await this.store.get(caps.ver);
    if (stored) return this.remember(caps.ver, stored.features);
    if (!HASHES[caps.hash]) {
      this.logger.debug('caps hash not supported', { entity: who, hash: caps.hash });
      return undefined;
    }
    let result: Element;
    try {
      result = await ask(new Element('query', { xmlns: NS.DISCO_INFO, node: `${caps.node}#${caps.ver}` }));
    } catch (err) {
      this.logger.debug('caps query failed', { entity: who, err: String(err) });
      return undefined;
    }
    const query = result.getChild('query', NS.DISCO_INFO);
    if (!query || !verifyCaps(query, caps.hash, caps.ver)) {
      // §5.4 3.8: "MUST NOT accept the received value ... SHOULD NOT globally cache".
      this.logger.info('caps ver does not match the disco#info answer; not trusted', { entity: who, ver: caps.ver });
      return undefined;
    }
    const features = query.getChildren('feature').map((f) => String(f.attrs.var));
    const remembered = this.remember(caps.ver, features);
    await this.store.put(caps.ver, { hash: caps.hash, features });
    return remembered;
  }

  private remember(ver: string, features: string[]): ReadonlySet<string> {
    const set = new Set(features);
    this.known.set(ver, set);
    if (this.known.size > MEMORY_LIMIT) this.known.delete(this.known.keys().next().value as string);
    return set;
  }
}

/** Byte-wise ("i;octet", XEP-0115 §5.1) string order. */
function compare(a: string, b: string): number {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return Buffer.compare(x, y);
}

function compareKeys(a: string[], b: string[]): number {
  for (let i = 0; i < a.length; i++) {
    const c = compare(a[i], b[i]);
    if (c !== 0) return c;
  }
  return 0;
}
