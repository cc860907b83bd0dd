import { createHash, createHmac, randomBytes, timingSafeEqual } from 'crypto';
import type { FastToken, FastTokenStore } from '../../storage/types';
import {
  ExchangeBase, SaslFailure, prepareUsername, type SaslStep,
} from './mechanism';

/**
 * The HT mechanisms of XEP-0484 (draft-schmaus-kitten-sasl-ht), strongest first, with the channel
 * binding each mixes in. Only SHA-256: its 64-byte HMAC block is what lets us keep a hash of the
 * token instead of the token (see FastTokens).
 */
export const HT_MECHANISMS: readonly { name: string; binding?: string }[] = [
  { name: 'HT-SHA-256-EXPR', binding: 'tls-exporter' },
  { name: 'HT-SHA-256-UNIQ', binding: 'tls-unique' },
  { name: 'HT-SHA-256-ENDP', binding: 'tls-server-end-point' },
  { name: 'HT-SHA-256-NONE' },
];

/** Random bytes of a token [66]: 88 characters, longer than SHA-256's 64-byte HMAC block. */
const TOKEN_BYTES = 66;
/** A token in use is replaced once it is this old [1 day], or half its lifetime if that is shorter. */
const ROTATE_AFTER_SECONDS = 86_400;
/** Longest XEP-0388 user-agent id accepted for tokens [256 characters]. */
const MAX_CLIENT_ID = 256;

export interface IssuedToken {
  token: string;
  mechanism: string;
  expiry: Date;
}

/** What a FAST login matched: the stored token, so the stream can promote, rotate or revoke it. */
export interface FastMatch {
  user: string;
  client: string;
  token: FastToken;
}

/**
 * XEP-0484 tokens: issued on request after a login, checked by the HT mechanisms, kept in the
 * shared database so that any node accepts a token another node issued.
 *
 * The database holds SHA-256(token), never the token. HMAC-SHA-256 hashes a key longer than its
 * 64-byte block before use (RFC 2104 §2), so HMAC(token, m) = HMAC(SHA-256(token), m) for our
 * 88-character tokens: the stored hash is all a node needs to check a login. It is, however, as
 * good as the token for a FAST login, so whoever reads the table can log in as the token's user
 * until it expires or is revoked (as with any token kept for HMAC checks); the token itself, which
 * the client also holds, never reaches the database or the logs.
 */
export class FastTokens {
  constructor(
    private readonly store: FastTokenStore,
    /** --fast-token-lifetime, seconds (read at each use: it may be reloaded). */
    private readonly lifetime: () => number,
  ) {}

  /** The HT mechanisms this connection can offer, given its channel-binding types. */
  offered(bindings: string[]): string[] {
    return HT_MECHANISMS.filter((m) => !m.binding || bindings.includes(m.binding)).map((m) => m.name);
  }

  /** The stored client key of a user-agent id, or undefined when the id cannot carry tokens. */
  static clientKey(userAgentId: string | undefined): string | undefined {
    if (!userAgentId || userAgentId.length > MAX_CLIENT_ID) return undefined;
    return createHash('sha256').update(userAgentId).digest('hex');
  }

  /** Issues a token to (user, client) for `mechanism`; it becomes the client's 'next'. */
  async issue(user: string, client: string, mechanism: string): Promise<IssuedToken> {
    const token = randomBytes(TOKEN_BYTES).toString('base64url');
    const issuedAt = new Date();
    const expiry = new Date(issuedAt.getTime() + this.lifetime() * 1000);
    await this.store.issue(user, client, { mechanism, keyHash: keyHashOf(token), issuedAt, expiresAt: expiry });
    return { token, mechanism, expiry };
  }

  /** The token matched by a login was used: a 'next' becomes 'current' (XEP-0484 §3.3). */
  async used(match: FastMatch): Promise<void> {
    if (match.token.slot === 'next') await this.store.promote(match.user, match.client, match.token.keyHash);
  }

  /** XEP-0484: a token that has been in use for a while is replaced (the old one works until the new one is used). */
  dueForRotation(match: FastMatch, now = Date.now()): boolean {
    const rotateAfter = Math.min(ROTATE_AFTER_SECONDS, this.lifetime() / 2) * 1000;
    return now - match.token.issuedAt.getTime() >= rotateAfter;
  }

  /** <fast invalidate='true'/>: the token that was just used stops working. */
  async revoke(match: FastMatch): Promise<void> {
    await this.store.revoke(match.user, match.client, match.token.keyHash);
  }

  /** Deletes expired tokens (every node may run it: it is idempotent). */
  prune(): Promise<number> {
    return this.store.pruneExpired(new Date());
  }

  /**
   * One HT exchange (draft-schmaus-kitten-sasl-ht §3): the client's first message is
   * authcid NUL HMAC(token, "Initiator" || cb-data); ours is HMAC(token, "Responder" || cb-data).
   */
  exchange(mechanism: string, domain: string, client: string | undefined, cbData: Buffer): HtExchange {
    return new HtExchange(this.store, mechanism, domain, client, cbData);
  }
}

export function keyHashOf(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export class HtExchange extends ExchangeBase {
  /** Set when the login succeeded: the token it used. */
  match?: FastMatch;

  constructor(
    private readonly store: FastTokenStore,
    private readonly mechanism: string,
    private readonly domain: string,
    private readonly client: string | undefined,
    private readonly cbData: Buffer,
  ) {
    super();
  }

  protected async next(response: Buffer): Promise<SaslStep> {
    const nul = response.indexOf(0);
    // The authcid is sent as UTF-8 by the draft; the HMAC is 32 raw bytes after the NUL.
    if (nul <= 0 || response.length - nul - 1 !== 32) throw new SaslFailure('malformed-request', 'expected authcid NUL HMAC-SHA-256');
    const username = prepareUsername(decodeLatin1OrUtf8(response.subarray(0, nul)), this.domain);
    this.username = username;
    const proof = response.subarray(nul + 1);
    if (!this.client) throw new SaslFailure('not-authorized', 'FAST needs the user-agent id the token was issued to');
    const user = `${username}@${this.domain}`;
    const initiator = Buffer.concat([Buffer.from('Initiator'), this.cbData]);
    for (const token of await this.store.find(user, this.client, new Date())) {
      if (token.mechanism !== this.mechanism) continue;
      const key = Buffer.from(token.keyHash, 'hex');
      if (!timingSafeEqual(hmac(key, initiator), proof)) continue;
      this.match = { user, client: this.client, token };
      return { kind: 'success', username, data: hmac(key, Buffer.concat([Buffer.from('Responder'), this.cbData])) };
    }
    // XEP-0484: a token that is unknown, expired, revoked or for another mechanism.
    throw new SaslFailure('credentials-expired', 'the token is not valid (expired, replaced or revoked); log in with the password');
  }
}

function hmac(key: Buffer, data: Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/**
 * The draft says UTF-8; some clients (xmpp.js builds the message with String.fromCodePoint and
 * btoa) send the authcid's characters as single bytes. ASCII, the common case, is both.
 */
function decodeLatin1OrUtf8(bytes: Buffer): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return bytes.toString('latin1');
  }
}
