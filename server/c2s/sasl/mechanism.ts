import type { ScramCredential, ScramHash } from '../../storage/types';
import { JIDError, parseJID, prepareLocalpart } from '../../jid';

/** RFC 6120 §6.5 SASL failure conditions. */
export type SaslCondition =
  | 'aborted' | 'account-disabled' | 'credentials-expired' | 'encryption-required'
  | 'incorrect-encoding' | 'invalid-authzid' | 'invalid-mechanism' | 'malformed-request'
  | 'mechanism-too-weak' | 'not-authorized' | 'temporary-auth-failure';

/** Ends one SASL exchange with <failure><condition/></failure>; the stream lives on. */
export class SaslFailure extends Error {
  constructor(
    readonly condition: SaslCondition,
    readonly text?: string,
    /** The password (or proof) was wrong: only this counts towards the account's lockout, not a protocol or channel-binding failure. */
    readonly wrongCredentials = false,
  ) {
    super(text ? `${condition}: ${text}` : condition);
    this.name = 'SaslFailure';
  }

  /** not-authorized because the password or proof does not match the account (or there is no such account). */
  static wrongCredentials(): SaslFailure {
    return new SaslFailure('not-authorized', undefined, true);
  }
}

/** Channel-binding types this server knows, in preference order (XEP-0440). */
export const CHANNEL_BINDING_TYPES = ['tls-exporter', 'tls-unique', 'tls-server-end-point'] as const;

export interface SaslContext {
  /** The domain the client's stream is addressed to. */
  domain: string;
  /** True when the stream is encrypted (TLS). */
  secure: boolean;
  /** Channel-binding data for a type ('tls-exporter', 'tls-unique', 'tls-server-end-point'), or undefined when this connection cannot offer it. */
  channelBinding(type: string): Buffer | undefined;
  /** Credentials of the prepared username (localpart) at ctx.domain, undefined for an unknown user. */
  lookupCredentials(username: string, hash: ScramHash): Promise<ScramCredential | undefined>;
}

export type SaslStep =
  | { kind: 'challenge'; data: Buffer }
  | { kind: 'success'; data?: Buffer; username: string };

/** One authentication attempt. step() rejects with SaslFailure; the exchange is then over. */
export interface SaslExchange {
  step(response: Buffer): Promise<SaslStep>;
  /** The prepared username once the client has named it (for logs, also of failures). */
  readonly username?: string;
}

export interface SaslMechanism {
  readonly name: string;
  /** offered only on TLS streams */
  readonly needsTls: boolean;
  /** offered only when the connection has channel binding */
  readonly needsChannelBinding: boolean;
  start(ctx: SaslContext): SaslExchange;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Strict UTF-8 decoding: bad bytes are 'incorrect-encoding' (RFC 6120 §6.5.2). */
export function decodeUtf8(data: Buffer): string {
  try {
    return utf8.decode(data);
  } catch {
    throw new SaslFailure('incorrect-encoding', 'not UTF-8');
  }
}

/**
 * The SASL authentication identity as a prepared localpart (RFC 6120 §6.3.8: a simple user name).
 * A bare JID at this domain is accepted too, as some clients send one. Throws not-authorized.
 */
export function prepareUsername(authcid: string, domain: string): string {
  try {
    const at = authcid.lastIndexOf('@');
    if (at > 0 && !authcid.includes('/')) {
      const jid = parseJID(authcid);
      if (jid.domain === domain && jid.local !== '') return jid.local;
    }
    return prepareLocalpart(authcid);
  } catch (err) {
    if (err instanceof JIDError) throw new SaslFailure('not-authorized', 'invalid username');
    throw err;
  }
}

/** RFC 6120 §6.3.8: an authzid, when given, must be the bare JID the client authenticates as. */
export function checkAuthzid(authzid: string, username: string, domain: string): void {
  if (authzid === '') return;
  let jid;
  try {
    jid = parseJID(authzid);
  } catch {
    throw new SaslFailure('invalid-authzid');
  }
  if (!jid.isBare() || jid.local !== username || jid.domain !== domain) {
    throw new SaslFailure('invalid-authzid');
  }
}

/** Base state machine shared by the mechanisms: one step at a time, nothing after the end. */
export abstract class ExchangeBase implements SaslExchange {
  username?: string;
  private busy = false;
  private finished = false;

  async step(response: Buffer): Promise<SaslStep> {
    if (this.finished || this.busy) throw new SaslFailure('malformed-request', 'unexpected response');
    this.busy = true;
    try {
      const result = await this.next(response);
      if (result.kind === 'success') this.finished = true;
      return result;
    } catch (err) {
      this.finished = true;
      throw err;
    } finally {
      this.busy = false;
    }
  }

  protected abstract next(response: Buffer): Promise<SaslStep>;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * The base64 payload of a SASL element (RFC 6120 §6.4.2 <auth/>, <response/>; XEP-0388
 * <initial-response/>, <response/>). Empty data is "=" in RFC 6120 and an empty element in SASL2;
 * both read as empty here. Anything that is not base64 is incorrect-encoding.
 */
export function decodeSaslData(text: string): Buffer {
  const trimmed = text.trim();
  if (trimmed === '=' || trimmed === '') return Buffer.alloc(0);
  if (!BASE64.test(trimmed) || trimmed.length % 4 !== 0) throw new SaslFailure('incorrect-encoding');
  return Buffer.from(trimmed, 'base64');
}
