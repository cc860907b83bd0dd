import { createHash, createHmac, pbkdf2, pbkdf2Sync, randomBytes, timingSafeEqual } from 'crypto';
import type { ScramCredential, ScramCredentials, ScramHash } from '../../storage/types';
import {
  CHANNEL_BINDING_TYPES, ExchangeBase, SaslFailure, checkAuthzid, decodeUtf8, prepareUsername,
  type SaslContext, type SaslExchange, type SaslMechanism, type SaslStep,
} from './mechanism';

// saslprep ships no type declarations.
const saslprep: (input: string, opts?: { allowUnassigned?: boolean }) => string = require('saslprep');

/**
 * PBKDF2 iterations for new credentials [10000] (RFC 7677 §4 asks for at least 4096), and the
 * count shown for unknown users, so that they look like real ones.
 */
export const DEFAULT_SCRAM_ITERATIONS = 10_000;

/** Length of the random salt of new credentials, in bytes [16]. */
const SALT_BYTES = 16;

const ALGORITHM: Record<ScramHash, string> = { 'SHA-1': 'sha1', 'SHA-256': 'sha256' };
const DIGEST_BYTES: Record<ScramHash, number> = { 'SHA-1': 20, 'SHA-256': 32 };

/** How unknown users are disguised (RFC 5802 §9: do not reveal whether a user exists). */
export interface UnknownUserOptions {
  /**
   * Key for the fake salts of unknown users. Nodes of one cluster should share it (e.g. derived
   * from --cluster-secret) so that a user unknown everywhere gets the same salt from every node.
   * Default: random per process.
   */
  unknownUserSecret?: Buffer | string;
  /** Iteration count shown for unknown users [DEFAULT_SCRAM_ITERATIONS]. */
  unknownUserIterations?: number;
}

export interface ScramOptions extends UnknownUserOptions {
  /** Server nonce factory (tests inject RFC vectors); default 18 random bytes in base64. */
  nonce?: () => string;
}

const PROCESS_SECRET = randomBytes(32);

// ---------------------------------------------------------------------------------------------
// Credentials (RFC 5802 §3).

/** SASLprep (RFC 4013) of a password; throws when it holds prohibited characters. */
export function prepPassword(password: string, stored = true): string {
  return saslprep(password, { allowUnassigned: !stored });
}

function hmac(hash: ScramHash, key: Buffer, data: string | Buffer): Buffer {
  return createHmac(ALGORITHM[hash], key).update(data).digest();
}

function digest(hash: ScramHash, data: Buffer): Buffer {
  return createHash(ALGORITHM[hash]).update(data).digest();
}

function credentialFromSaltedPassword(
  hash: ScramHash, salted: Buffer, salt: Buffer, iterations: number,
): ScramCredential {
  return {
    salt: salt.toString('base64'),
    iterations,
    storedKey: digest(hash, hmac(hash, salted, 'Client Key')).toString('base64'),
    serverKey: hmac(hash, salted, 'Server Key').toString('base64'),
  };
}

function checkIterations(iterations: number): void {
  if (!Number.isInteger(iterations) || iterations < 1) throw new RangeError(`invalid SCRAM iteration count ${iterations}`);
}

/** Derives the stored credential for a password (SASLprep'd first); salt: 16 random bytes by default. */
export function deriveScramCredential(
  password: string, hash: ScramHash, iterations: number, salt: Buffer = randomBytes(SALT_BYTES),
): ScramCredential {
  checkIterations(iterations);
  const salted = pbkdf2Sync(prepPassword(password), salt, iterations, DIGEST_BYTES[hash], ALGORITHM[hash]);
  return credentialFromSaltedPassword(hash, salted, salt, iterations);
}

/** Both credentials (SHA-1 and SHA-256) for a password, each with its own salt. */
export function deriveScramCredentials(password: string, iterations = DEFAULT_SCRAM_ITERATIONS): ScramCredentials {
  return {
    'SHA-1': deriveScramCredential(password, 'SHA-1', iterations),
    'SHA-256': deriveScramCredential(password, 'SHA-256', iterations),
  };
}

/** As deriveScramCredentials, off the event loop (PBKDF2 runs in the libuv thread pool). */
export async function deriveScramCredentialsAsync(
  password: string, iterations = DEFAULT_SCRAM_ITERATIONS,
): Promise<ScramCredentials> {
  checkIterations(iterations);
  const prepared = prepPassword(password);
  const one = async (hash: ScramHash): Promise<ScramCredential> => {
    const salt = randomBytes(SALT_BYTES);
    const salted = await pbkdf2Async(prepared, salt, iterations, hash);
    return credentialFromSaltedPassword(hash, salted, salt, iterations);
  };
  const [sha1, sha256] = await Promise.all([one('SHA-1'), one('SHA-256')]);
  return { 'SHA-1': sha1, 'SHA-256': sha256 };
}

function pbkdf2Async(password: string, salt: Buffer, iterations: number, hash: ScramHash): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    pbkdf2(password, salt, iterations, DIGEST_BYTES[hash], ALGORITHM[hash], (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** True when `password` matches the stored credential (constant-time comparison of StoredKey). */
export function verifyPassword(password: string, cred: ScramCredential, hash: ScramHash): boolean {
  const prepared = tryPrepPassword(password);
  if (prepared === undefined || !validCredential(cred)) return false;
  const salted = pbkdf2Sync(prepared, Buffer.from(cred.salt, 'base64'), cred.iterations, DIGEST_BYTES[hash], ALGORITHM[hash]);
  return storedKeyMatches(hash, salted, cred);
}

/** As verifyPassword, off the event loop. */
export async function verifyPasswordAsync(password: string, cred: ScramCredential, hash: ScramHash): Promise<boolean> {
  const prepared = tryPrepPassword(password);
  if (prepared === undefined || !validCredential(cred)) return false;
  const salted = await pbkdf2Async(prepared, Buffer.from(cred.salt, 'base64'), cred.iterations, hash);
  return storedKeyMatches(hash, salted, cred);
}

function tryPrepPassword(password: string): string | undefined {
  try {
    return prepPassword(password, false);
  } catch {
    return undefined;
  }
}

function validCredential(cred: ScramCredential): boolean {
  return Number.isInteger(cred.iterations) && cred.iterations >= 1;
}

function storedKeyMatches(hash: ScramHash, salted: Buffer, cred: ScramCredential): boolean {
  const storedKey = digest(hash, hmac(hash, salted, 'Client Key'));
  return safeEqual(storedKey, Buffer.from(cred.storedKey, 'base64'));
}

/** Constant-time equality that also tolerates different lengths. */
export function safeEqual(a: Buffer, b: Buffer): boolean {
  if (a.length !== b.length) {
    timingSafeEqual(a, a);
    return false;
  }
  return timingSafeEqual(a, b);
}

/**
 * A credential for a user that does not exist: deterministic per username (HMAC with a secret),
 * so repeated attempts see the same salt, and matching no password.
 */
export function unknownUserCredential(username: string, hash: ScramHash, options: UnknownUserOptions = {}): ScramCredential {
  const secret = options.unknownUserSecret ?? PROCESS_SECRET;
  const derive = (label: string) => createHmac('sha256', secret).update(`${label}\0${hash}\0${username}`).digest();
  return {
    salt: derive('salt').subarray(0, SALT_BYTES).toString('base64'),
    iterations: options.unknownUserIterations ?? DEFAULT_SCRAM_ITERATIONS,
    storedKey: derive('stored-key').subarray(0, DIGEST_BYTES[hash]).toString('base64'),
    serverKey: derive('server-key').subarray(0, DIGEST_BYTES[hash]).toString('base64'),
  };
}

/** Looks credentials up, mapping storage errors to temporary-auth-failure (RFC 6120 §6.5.11). */
export async function lookupOrFail(
  ctx: SaslContext, username: string, hash: ScramHash,
): Promise<ScramCredential | undefined> {
  try {
    return await ctx.lookupCredentials(username, hash);
  } catch {
    throw new SaslFailure('temporary-auth-failure');
  }
}

// ---------------------------------------------------------------------------------------------
// The exchange (RFC 5802 §5, §7).

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** RFC 5802 §7: printable = %x21-2B / %x2D-7E */
const NONCE = /^[\x21-\x2B\x2D-\x7E]+$/;
const CB_NAME = /^[A-Za-z0-9.-]+$/;
const ATTR_VAL = /^[A-Za-z]=/;

function decodeBase64(value: string): Buffer {
  if (!BASE64.test(value)) throw new SaslFailure('incorrect-encoding', 'bad base64');
  return Buffer.from(value, 'base64');
}

/** RFC 5802 §5.1: saslname with ',' and '=' escaped as =2C and =3D. */
function decodeSaslname(value: string): string {
  if (value === '' || /=(?!2C|3D)/.test(value)) throw new SaslFailure('malformed-request', 'bad saslname');
  return value.replace(/=2C/g, ',').replace(/=3D/g, '=');
}

function attribute(part: string | undefined, name: string): string {
  if (part === undefined || !part.startsWith(`${name}=`)) {
    throw new SaslFailure('malformed-request', `expected attribute '${name}'`);
  }
  return part.slice(2);
}

function checkExtensions(parts: string[]): void {
  for (const part of parts) {
    if (!ATTR_VAL.test(part)) throw new SaslFailure('malformed-request', 'bad attribute');
  }
}

function readMessage(response: Buffer): string {
  const message = decodeUtf8(response);
  if (message.includes('\0')) throw new SaslFailure('malformed-request', 'NUL in message');
  return message;
}

interface ServerFirstState {
  username: string;
  known: boolean;
  credential: ScramCredential;
  clientFirstBare: string;
  serverFirst: string;
  nonce: string;
  /** The c= value the client must send: gs2 header, then the channel-binding data for -PLUS. */
  channelBinding: Buffer;
}

class ScramExchange extends ExchangeBase {
  private state: ServerFirstState | undefined;
  private sentEmptyChallenge = false;

  constructor(
    private readonly hash: ScramHash,
    private readonly plus: boolean,
    private readonly ctx: SaslContext,
    private readonly options: ScramOptions,
  ) {
    super();
  }

  protected async next(response: Buffer): Promise<SaslStep> {
    if (this.state) return this.clientFinal(response, this.state);
    // RFC 6120 §6.4.2: no initial response, so ask for it with an empty challenge (once).
    if (response.length === 0 && !this.sentEmptyChallenge) {
      this.sentEmptyChallenge = true;
      return { kind: 'challenge', data: Buffer.alloc(0) };
    }
    return this.clientFirst(response);
  }

  private async clientFirst(response: Buffer): Promise<SaslStep> {
    const message = readMessage(response);
    const parts = message.split(',');
    if (parts.length < 4) throw new SaslFailure('malformed-request', 'truncated client-first-message');
    const [flag, authzidPart] = parts;
    const gs2Header = `${flag},${authzidPart},`;
    const clientFirstBare = message.slice(gs2Header.length);

    let authzid = '';
    if (authzidPart !== '') authzid = decodeSaslname(attribute(authzidPart, 'a'));
    // RFC 5802 §5.1: "m" is reserved for mandatory extensions: the server MUST fail.
    if (parts[2].startsWith('m=')) throw new SaslFailure('malformed-request', 'extensions not supported');
    const rawUsername = decodeSaslname(attribute(parts[2], 'n'));
    const clientNonce = attribute(parts[3], 'r');
    if (!NONCE.test(clientNonce)) throw new SaslFailure('malformed-request', 'bad nonce');
    checkExtensions(parts.slice(4));

    let prepped: string;
    try {
      prepped = saslprep(rawUsername, { allowUnassigned: true });
    } catch {
      throw new SaslFailure('not-authorized', 'invalid username');
    }
    const username = prepareUsername(prepped, this.ctx.domain);
    this.username = username;
    checkAuthzid(authzid, username, this.ctx.domain);
    const cbData = this.channelBindingFor(flag);

    const stored = await lookupOrFail(this.ctx, username, this.hash);
    const known = stored !== undefined && validCredential(stored);
    const credential = known ? stored : unknownUserCredential(username, this.hash, this.options);
    const nonce = clientNonce + (this.options.nonce ?? defaultNonce)();
    const serverFirst = `r=${nonce},s=${credential.salt},i=${credential.iterations}`;
    this.state = {
      username,
      known,
      credential,
      clientFirstBare,
      serverFirst,
      nonce,
      channelBinding: cbData ? Buffer.concat([Buffer.from(gs2Header, 'utf8'), cbData]) : Buffer.from(gs2Header, 'utf8'),
    };
    return { kind: 'challenge', data: Buffer.from(serverFirst, 'utf8') };
  }

  /** RFC 5802 §6: the gs2-cbind-flag against what this mechanism and connection offer. */
  private channelBindingFor(flag: string): Buffer | undefined {
    if (flag === 'n' || flag === 'y') {
      if (this.plus) throw new SaslFailure('malformed-request', `${this.hash} -PLUS needs channel binding`);
      // "If the flag is set to 'y' and the server supports channel binding, the server MUST fail
      // authentication": a downgrade attack stripped the -PLUS mechanisms.
      if (flag === 'y' && CHANNEL_BINDING_TYPES.some((type) => this.ctx.channelBinding(type) !== undefined)) {
        throw new SaslFailure('not-authorized', 'channel binding downgrade');
      }
      return undefined;
    }
    const type = flag.startsWith('p=') ? flag.slice(2) : '';
    if (!CB_NAME.test(type)) throw new SaslFailure('malformed-request', 'bad gs2-cbind-flag');
    if (!this.plus) throw new SaslFailure('malformed-request', 'channel binding needs a -PLUS mechanism');
    const data = this.ctx.channelBinding(type);
    if (data === undefined) throw new SaslFailure('not-authorized', `unsupported channel binding type ${type}`);
    return data;
  }

  private clientFinal(response: Buffer, state: ServerFirstState): SaslStep {
    const message = readMessage(response);
    const parts = message.split(',');
    if (parts.length < 3) throw new SaslFailure('malformed-request', 'truncated client-final-message');
    const channelBinding = decodeBase64(attribute(parts[0], 'c'));
    const nonce = attribute(parts[1], 'r');
    checkExtensions(parts.slice(2, -1));
    const proof = decodeBase64(attribute(parts[parts.length - 1], 'p'));
    const withoutProof = parts.slice(0, -1).join(',');

    if (!safeEqual(channelBinding, state.channelBinding)) throw new SaslFailure('not-authorized', 'channel binding mismatch');
    if (!safeEqual(Buffer.from(nonce, 'utf8'), Buffer.from(state.nonce, 'utf8'))) {
      throw new SaslFailure('not-authorized', 'nonce mismatch');
    }
    if (proof.length !== DIGEST_BYTES[this.hash]) throw new SaslFailure('not-authorized');

    const authMessage = `${state.clientFirstBare},${state.serverFirst},${withoutProof}`;
    const storedKey = Buffer.from(state.credential.storedKey, 'base64');
    const clientSignature = hmac(this.hash, storedKey, authMessage);
    const clientKey = Buffer.alloc(proof.length);
    for (let i = 0; i < proof.length; i++) clientKey[i] = proof[i] ^ clientSignature[i];
    const matches = safeEqual(digest(this.hash, clientKey), storedKey);
    if (!matches || !state.known) throw SaslFailure.wrongCredentials();

    const serverSignature = hmac(this.hash, Buffer.from(state.credential.serverKey, 'base64'), authMessage);
    return {
      kind: 'success',
      data: Buffer.from(`v=${serverSignature.toString('base64')}`, 'utf8'),
      username: state.username,
    };
  }
}

function defaultNonce(): string {
  return randomBytes(18).toString('base64');
}

/** SCRAM-SHA-1 / SCRAM-SHA-256 (RFC 5802, RFC 7677) and their -PLUS variants with channel binding. */
export class ScramMechanism implements SaslMechanism {
  readonly name: string;
  /** -PLUS binds to the TLS channel, so it exists only on TLS streams. */
  readonly needsTls: boolean;
  readonly needsChannelBinding: boolean;

  constructor(readonly hash: ScramHash, readonly plus: boolean, private readonly options: ScramOptions = {}) {
    this.name = `SCRAM-${hash}${plus ? '-PLUS' : ''}`;
    this.needsTls = plus;
    this.needsChannelBinding = plus;
  }

  start(ctx: SaslContext): SaslExchange {
    return new ScramExchange(this.hash, this.plus, ctx, this.options);
  }
}
