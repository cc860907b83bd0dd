import { createHash, randomBytes } from 'crypto';
import { Element } from 'ltx';
import { makeJID } from '../jid';
import { NS } from '../xml/ns';
import { decodeSaslData, SaslFailure } from './sasl/mechanism';

/** XEP-0386 inline requests inside <bind xmlns='urn:xmpp:bind:0'/>. */
export interface Bind2Request {
  tag?: string;
  /** XEP-0198 <enable/> inline. */
  sm?: { resume: boolean; max?: number };
  /** XEP-0280 <enable/> inline. */
  carbons: boolean;
  /** XEP-0352: the session starts inactive. */
  inactive: boolean;
}

/** One XEP-0388 <authenticate/> with what it asks for inline. */
export interface Sasl2Request {
  mechanism: string;
  /** Absent: no initial response (an empty element is an empty one: XEP-0388 §2.2). */
  initialResponse?: Buffer;
  /** XEP-0388 <user-agent id/>: identifies the client for FAST tokens and stable resources. */
  userAgentId?: string;
  /** XEP-0198 <resume/> inline. */
  resume?: { previd: string; h: number };
  bind?: Bind2Request;
  /** XEP-0484 <request-token mechanism/>. */
  requestToken?: string;
  /** XEP-0484 <fast invalidate/>: the token used to log in stops working. */
  invalidate: boolean;
}

/** Longest Bind2 tag kept in a resource [64 characters]; a longer one is cut. */
const MAX_TAG = 64;

export function parseAuthenticate(element: Element): Sasl2Request {
  const mechanism = element.attrs.mechanism as string | undefined;
  if (!mechanism) throw new SaslFailure('invalid-mechanism', 'no mechanism named');
  const initial = element.getChild('initial-response');
  const userAgentId = element.getChild('user-agent')?.attrs.id as string | undefined;
  const request: Sasl2Request = {
    mechanism,
    initialResponse: initial ? decodeSaslData(initial.getText()) : undefined,
    userAgentId: userAgentId || undefined,
    invalidate: false,
  };
  const resume = element.getChild('resume', NS.SM);
  if (resume) {
    const h = Number(resume.attrs.h);
    const previd = String(resume.attrs.previd ?? '');
    if (!Number.isSafeInteger(h) || h < 0 || !previd) throw new SaslFailure('malformed-request', 'resume needs previd and h');
    request.resume = { previd, h };
  }
  const bind = element.getChild('bind', NS.BIND2);
  if (bind) {
    const enable = bind.getChild('enable', NS.SM);
    const max = Number(enable?.attrs.max);
    request.bind = {
      tag: bind.getChildText('tag')?.trim() || undefined,
      sm: enable ? { resume: enable.attrs.resume === 'true' || enable.attrs.resume === '1', max: Number.isFinite(max) ? max : undefined } : undefined,
      carbons: !!bind.getChild('enable', NS.CARBONS),
      inactive: !!bind.getChild('inactive', NS.CSI),
    };
  }
  const requestToken = element.getChild('request-token', NS.FAST);
  if (requestToken) request.requestToken = String(requestToken.attrs.mechanism ?? '');
  const fast = element.getChild('fast', NS.FAST);
  if (fast) request.invalidate = fast.attrs.invalidate === 'true' || fast.attrs.invalidate === '1';
  return request;
}

/**
 * XEP-0386 §4: the resource is the client's tag and a part the server makes up, "tag/suffix". With a
 * user-agent id the suffix is the same at every login of that client (so a new login replaces the
 * client's old session rather than piling up), derived one way so that the id is not exposed.
 */
export function bind2Resource(bare: string, tag: string | undefined, userAgentId: string | undefined): string {
  const suffix = userAgentId
    ? createHash('sha256').update(`${bare}\0${userAgentId}`).digest('base64url').slice(0, 10)
    : randomBytes(8).toString('base64url');
  const cut = tag ? [...tag].slice(0, MAX_TAG).join('') : undefined;
  if (cut) {
    const resource = `${cut}/${suffix}`;
    try {
      makeJID('x', 'example', resource);
      return resource;
    } catch {
      // A tag that is no valid resourcepart (control characters, ...) is left out.
    }
  }
  return suffix;
}

/** XEP-0388 §2.6.2 <failure/>: the RFC 6120 condition, then an optional text. */
export function sasl2Failure(condition: string, text?: string): Element {
  const failure = new Element('failure', { xmlns: NS.SASL2 });
  failure.c(condition, { xmlns: NS.SASL });
  if (text) failure.c('text').t(text);
  return failure;
}
