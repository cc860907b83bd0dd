import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { Element } from 'ltx';
import { NS } from '../xml/ns';

/**
 * Dialback keys (XEP-0185): HMAC-SHA256 keyed with the hex SHA-256 of a secret, over
 * "Receiving Server ␠ Originating Server ␠ Stream ID". Every node of a cluster holds the same
 * secret (--s2s-secret), so any of them verifies a key another generated.
 */
export class DialbackKeys {
  private readonly key: string;

  constructor(secret: string) {
    this.key = createHash('sha256').update(secret).digest('hex');
  }

  generate(receiving: string, originating: string, streamId: string): string {
    return createHmac('sha256', this.key).update(`${receiving} ${originating} ${streamId}`).digest('hex');
  }

  verify(receiving: string, originating: string, streamId: string, key: string): boolean {
    const expected = Buffer.from(this.generate(receiving, originating, streamId));
    const given = Buffer.from(key.trim());
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}

/** `<db:result/>` or `<db:verify/>` in either form a peer may send (prefixed, or with a default namespace): its kind. */
export function dialbackKind(element: Element): 'result' | 'verify' | undefined {
  for (const kind of ['result', 'verify'] as const) {
    if (element.name === `db:${kind}` || (element.name === kind && element.attrs.xmlns === NS.DIALBACK)) return kind;
  }
  return undefined;
}

/** A dialback element to write on a stream whose header declared xmlns:db. */
export function dialbackElement(kind: 'result' | 'verify', attrs: Record<string, string>, key?: string): Element {
  const element = new Element(`db:${kind}`, attrs);
  if (key !== undefined) element.t(key);
  return element;
}
