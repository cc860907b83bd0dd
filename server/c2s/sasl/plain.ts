import type { ScramCredential, ScramHash } from '../../storage/types';
import {
  ExchangeBase, SaslFailure, checkAuthzid, decodeUtf8, prepareUsername,
  type SaslContext, type SaslExchange, type SaslMechanism, type SaslStep,
} from './mechanism';
import { lookupOrFail, prepPassword, unknownUserCredential, verifyPasswordAsync, type UnknownUserOptions } from './scram';

/**
 * PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd` in UTF-8, checked against the stored
 * SCRAM credential (SHA-256, else SHA-1). Sends the password itself, so only over TLS.
 */
export class PlainMechanism implements SaslMechanism {
  readonly name = 'PLAIN';
  readonly needsTls = true;
  readonly needsChannelBinding = false;

  constructor(private readonly options: UnknownUserOptions = {}) {}

  start(ctx: SaslContext): SaslExchange {
    return new PlainExchange(ctx, this.options);
  }
}

class PlainExchange extends ExchangeBase {
  private sentEmptyChallenge = false;

  constructor(private readonly ctx: SaslContext, private readonly options: UnknownUserOptions) {
    super();
  }

  protected async next(response: Buffer): Promise<SaslStep> {
    // RFC 6120 §6.4.2: no initial response, so ask for it with an empty challenge (once).
    if (response.length === 0 && !this.sentEmptyChallenge) {
      this.sentEmptyChallenge = true;
      return { kind: 'challenge', data: Buffer.alloc(0) };
    }
    const parts = decodeUtf8(response).split('\0');
    if (parts.length !== 3) throw new SaslFailure('malformed-request', 'expected authzid NUL authcid NUL passwd');
    const [authzid, authcid, password] = parts;
    if (authcid === '' || password === '') throw new SaslFailure('malformed-request', 'empty authcid or password');

    let prepped: string;
    try {
      // RFC 4616 §2: authcid and passwd are prepared with SASLprep.
      prepped = prepPassword(authcid, false);
    } catch {
      throw new SaslFailure('not-authorized', 'invalid username');
    }
    const username = prepareUsername(prepped, this.ctx.domain);
    this.username = username;
    checkAuthzid(authzid, username, this.ctx.domain);

    let hash: ScramHash = 'SHA-256';
    let credential: ScramCredential | undefined = await lookupOrFail(this.ctx, username, hash);
    if (!credential) {
      hash = 'SHA-1';
      credential = await lookupOrFail(this.ctx, username, hash);
    }
    if (!credential) {
      // Same PBKDF2 work as for a real user, so response time does not tell who exists.
      await verifyPasswordAsync(password, unknownUserCredential(username, 'SHA-256', this.options), 'SHA-256');
      throw SaslFailure.wrongCredentials();
    }
    if (!(await verifyPasswordAsync(password, credential, hash))) throw SaslFailure.wrongCredentials();
    return { kind: 'success', username };
  }
}
