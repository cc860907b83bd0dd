import { Element } from 'ltx';
import { NS } from './xml/ns';

/** RFC 6120 §8.3.3 defined stanza error conditions. */
export type StanzaErrorCondition =
  | 'bad-request' | 'conflict' | 'feature-not-implemented' | 'forbidden' | 'gone'
  | 'internal-server-error' | 'item-not-found' | 'jid-malformed' | 'not-acceptable'
  | 'not-allowed' | 'not-authorized' | 'policy-violation' | 'recipient-unavailable'
  | 'redirect' | 'registration-required' | 'remote-server-not-found'
  | 'remote-server-timeout' | 'resource-constraint' | 'service-unavailable'
  | 'subscription-required' | 'undefined-condition' | 'unexpected-request';

export type StanzaErrorType = 'auth' | 'cancel' | 'continue' | 'modify' | 'wait';

/** RFC 6120 §8.3.3: the error type that goes with each condition by default. */
const DEFAULT_TYPE: Record<StanzaErrorCondition, StanzaErrorType> = {
  'bad-request': 'modify', conflict: 'cancel', 'feature-not-implemented': 'cancel',
  forbidden: 'auth', gone: 'cancel', 'internal-server-error': 'cancel',
  'item-not-found': 'cancel', 'jid-malformed': 'modify', 'not-acceptable': 'modify',
  'not-allowed': 'cancel', 'not-authorized': 'auth', 'policy-violation': 'modify',
  'recipient-unavailable': 'wait', redirect: 'modify', 'registration-required': 'auth',
  'remote-server-not-found': 'cancel', 'remote-server-timeout': 'wait',
  'resource-constraint': 'wait', 'service-unavailable': 'cancel',
  'subscription-required': 'auth', 'undefined-condition': 'cancel',
  'unexpected-request': 'wait',
};

/** A failure answered with an error stanza; the stream lives on. */
export class StanzaError extends Error {
  readonly type: StanzaErrorType;
  constructor(
    readonly condition: StanzaErrorCondition,
    readonly text?: string,
    type?: StanzaErrorType,
    /** Application-specific condition element (e.g. <blocked xmlns='urn:xmpp:blocking:errors'/>). */
    readonly appCondition?: Element,
  ) {
    super(text ? `${condition}: ${text}` : condition);
    this.name = 'StanzaError';
    this.type = type ?? DEFAULT_TYPE[condition];
  }

  /** The <error/> child of an error stanza (RFC 6120 §8.3.2). */
  toElement(by?: string): Element {
    const error = new Element('error', by ? { type: this.type, by } : { type: this.type });
    error.c(this.condition, { xmlns: NS.STANZAS });
    if (this.text) error.c('text', { xmlns: NS.STANZAS, 'xml:lang': 'en' }).t(this.text);
    if (this.appCondition) error.cnode(this.appCondition);
    return error;
  }
}

/** RFC 6120 §4.9.3 stream error conditions. */
export type StreamErrorCondition =
  | 'bad-format' | 'bad-namespace-prefix' | 'conflict' | 'connection-timeout'
  | 'host-gone' | 'host-unknown' | 'improper-addressing' | 'internal-server-error'
  | 'invalid-from' | 'invalid-namespace' | 'invalid-xml' | 'not-authorized'
  | 'not-well-formed' | 'policy-violation' | 'remote-connection-failed' | 'reset'
  | 'resource-constraint' | 'restricted-xml' | 'see-other-host' | 'system-shutdown'
  | 'undefined-condition' | 'unsupported-encoding' | 'unsupported-feature'
  | 'unsupported-stanza-type' | 'unsupported-version';

/** A failure that ends one stream with <stream:error/>; other streams go on. */
export class StreamError extends Error {
  constructor(readonly condition: StreamErrorCondition, readonly text?: string) {
    super(text ? `${condition}: ${text}` : condition);
    this.name = 'StreamError';
  }

  toElement(): Element {
    const error = new Element('stream:error');
    error.c(this.condition, { xmlns: NS.STREAMS });
    if (this.text) error.c('text', { xmlns: NS.STREAMS, 'xml:lang': 'en' }).t(this.text);
    return error;
  }
}
