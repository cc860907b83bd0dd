import t from 'tap';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'crypto';
import { once } from 'events';
import type { AddressInfo } from 'net';
import * as tls from 'tls';
import { generate } from 'selfsigned';
import type { ScramCredential, ScramCredentials, ScramHash } from '../../server/storage/types';
import { SaslFailure, type SaslContext, type SaslExchange, type SaslStep } from '../../server/c2s/sasl/mechanism';
import {
  ScramMechanism, deriveScramCredential, deriveScramCredentials, deriveScramCredentialsAsync,
  verifyPassword, verifyPasswordAsync,
} from '../../server/c2s/sasl/scram';
import { MECHANISMS, offeredMechanisms } from '../../server/c2s/sasl/index';
import { availableChannelBindings, channelBindingFor } from '../../server/c2s/sasl/channel-binding';

const ALG: Record<ScramHash, string> = { 'SHA-1': 'sha1', 'SHA-256': 'sha256' };
const LEN: Record<ScramHash, number> = { 'SHA-1': 20, 'SHA-256': 32 };

interface ContextOptions {
  users?: Record<string, Partial<ScramCredentials>>;
  channelBindings?: Record<string, Buffer>;
  domain?: string;
  lookups?: string[];
  failLookups?: boolean;
}

function context(opts: ContextOptions = {}): SaslContext {
  return {
    domain: opts.domain ?? 'example.com',
    secure: true,
    channelBinding: (type) => opts.channelBindings?.[type],
    lookupCredentials: async (username, hash) => {
      opts.lookups?.push(username);
      if (opts.failLookups) throw new Error('database down');
      return opts.users?.[username]?.[hash];
    },
  };
}

/** A minimal RFC 5802 client, to drive the server through exchanges the vectors do not cover. */
class ScramClient {
  readonly clientFirstBare: string;
  private authMessage = '';
  private saltedPassword = Buffer.alloc(0);

  constructor(
    readonly hash: ScramHash,
    readonly username: string,
    readonly password: string,
    readonly gs2Header = 'n,,',
    readonly cbData = Buffer.alloc(0),
    readonly clientNonce = randomBytes(12).toString('base64'),
  ) {
    const escaped = username.replace(/=/g, '=3D').replace(/,/g, '=2C');
    this.clientFirstBare = `n=${escaped},r=${clientNonce}`;
  }

  first(): Buffer {
    return Buffer.from(this.gs2Header + this.clientFirstBare);
  }

  final(serverFirst: Buffer, tamper: { nonce?: string; c?: string } = {}): Buffer {
    const attrs = Object.fromEntries(serverFirst.toString().split(',').map((kv) => [kv[0], kv.slice(2)]));
    this.saltedPassword = pbkdf2Sync(this.password, Buffer.from(attrs.s, 'base64'), Number(attrs.i), LEN[this.hash], ALG[this.hash]);
    const c = tamper.c ?? Buffer.concat([Buffer.from(this.gs2Header), this.cbData]).toString('base64');
    const withoutProof = `c=${c},r=${tamper.nonce ?? attrs.r}`;
    this.authMessage = `${this.clientFirstBare},${serverFirst.toString()},${withoutProof}`;
    const clientKey = this.hmac(this.saltedPassword, 'Client Key');
    const storedKey = createHash(ALG[this.hash]).update(clientKey).digest();
    const signature = this.hmac(storedKey, this.authMessage);
    const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]));
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`);
  }

  serverSignatureOk(serverFinal: Buffer | undefined): boolean {
    const serverKey = this.hmac(this.saltedPassword, 'Server Key');
    return serverFinal?.toString() === `v=${this.hmac(serverKey, this.authMessage).toString('base64')}`;
  }

  private hmac(key: Buffer, data: string): Buffer {
    return createHmac(ALG[this.hash], key).update(data).digest();
  }
}

async function challenge(exchange: SaslExchange, data: Buffer): Promise<Buffer> {
  const step = await exchange.step(data);
  if (step.kind !== 'challenge') throw new Error(`expected a challenge, got ${step.kind}`);
  return step.data;
}

/** Runs a whole exchange; resolves to the success step or rejects with the SaslFailure. */
async function login(mechanism: ScramMechanism, ctx: SaslContext, client: ScramClient): Promise<SaslStep> {
  const exchange = mechanism.start(ctx);
  const serverFirst = await challenge(exchange, client.first());
  return exchange.step(client.final(serverFirst));
}

const PASSWORD = 'pencil';
const ITERATIONS = 4096;
const juliet: ScramCredentials = deriveScramCredentials('s3cret', 4096);
const users = { juliet };

t.test('SCRAM-SHA-1 reproduces the RFC 5802 §5 exchange', async (t) => {
  const cred = deriveScramCredential(PASSWORD, 'SHA-1', ITERATIONS, Buffer.from('QSXCR+Q6sek8bf92', 'base64'));
  const mechanism = new ScramMechanism('SHA-1', false, { nonce: () => '3rfcNHYJY1ZVvWVs7j' });
  t.equal(mechanism.name, 'SCRAM-SHA-1');
  const exchange = mechanism.start(context({ users: { user: { 'SHA-1': cred } } }));
  const serverFirst = await challenge(exchange, Buffer.from('n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL'));
  t.equal(serverFirst.toString(), 'r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096');
  const final = await exchange.step(Buffer.from(
    'c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts='));
  t.same(final, { kind: 'success', data: Buffer.from('v=rmF9pqV8S7suAoZWja4dJRkFsKQ='), username: 'user' });
});

t.test('SCRAM-SHA-256 reproduces the RFC 7677 §3 exchange', async (t) => {
  const cred = deriveScramCredential(PASSWORD, 'SHA-256', ITERATIONS, Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'));
  const mechanism = new ScramMechanism('SHA-256', false, { nonce: () => '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0' });
  t.equal(mechanism.name, 'SCRAM-SHA-256');
  const exchange = mechanism.start(context({ users: { user: { 'SHA-256': cred } } }));
  const serverFirst = await challenge(exchange, Buffer.from('n,,n=user,r=rOprNGfwEbeRWgbNEkqO'));
  t.equal(serverFirst.toString(),
    'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096');
  const final = await exchange.step(Buffer.from(
    'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ='));
  t.same(final, { kind: 'success', data: Buffer.from('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4='), username: 'user' });
});

t.test('a user logs in with both hashes and the client verifies the server signature', async (t) => {
  for (const hash of ['SHA-1', 'SHA-256'] as const) {
    const client = new ScramClient(hash, 'juliet', 's3cret');
    const step = await login(new ScramMechanism(hash, false), context({ users }), client);
    t.equal(step.kind, 'success', hash);
    if (step.kind === 'success') {
      t.equal(step.username, 'juliet');
      t.ok(client.serverSignatureOk(step.data), `${hash} server signature`);
    }
  }
});

t.test('the username is SASLprep-ed and case-folded like a localpart', async (t) => {
  const lookups: string[] = [];
  const step = await login(new ScramMechanism('SHA-256', false), context({ users, lookups }),
    new ScramClient('SHA-256', 'JULIET', 's3cret'));
  t.equal(step.kind, 'success');
  t.same(lookups, ['juliet']);

  const escaped: string[] = [];
  const comma = deriveScramCredentials('pw', 4096);
  const ok = await login(new ScramMechanism('SHA-256', false), context({ users: { 'a,b=c': comma }, lookups: escaped }),
    new ScramClient('SHA-256', 'a,b=c', 'pw'));
  t.same(escaped, ['a,b=c'], '=2C and =3D are decoded');
  t.match(ok, { kind: 'success', username: 'a,b=c' });
});

t.test('wrong password fails with not-authorized', async (t) => {
  await t.rejects(login(new ScramMechanism('SHA-256', false), context({ users }),
    new ScramClient('SHA-256', 'juliet', 'wrong')), { name: 'SaslFailure', condition: 'not-authorized' });
});

t.test('an unknown user sees a normal, stable server-first-message, then not-authorized', async (t) => {
  const mechanism = new ScramMechanism('SHA-256', false);
  const firsts: string[] = [];
  for (let i = 0; i < 2; i++) {
    const exchange = mechanism.start(context({ users }));
    const client = new ScramClient('SHA-256', 'romeo', 'anything');
    const serverFirst = await challenge(exchange, client.first());
    firsts.push(serverFirst.toString());
    await t.rejects(exchange.step(client.final(serverFirst)), { name: 'SaslFailure', condition: 'not-authorized' });
  }
  const known = await challenge(mechanism.start(context({ users })), new ScramClient('SHA-256', 'juliet', 'x').first());
  const shape = /^r=[^,]+,s=([A-Za-z0-9+/]{22}==),i=(\d+)$/;
  t.match(firsts[0], shape);
  t.match(known.toString(), shape);
  t.equal(firsts[0].match(shape)![1], firsts[1].match(shape)![1], 'same fake salt each time');
  const other = await challenge(mechanism.start(context({ users })), new ScramClient('SHA-256', 'tybalt', 'x').first());
  t.not(other.toString().match(shape)![1], firsts[0].match(shape)![1], 'salts differ per username');

  const secret = 'cluster-wide';
  const a = await challenge(new ScramMechanism('SHA-1', false, { unknownUserSecret: secret }).start(context()),
    new ScramClient('SHA-1', 'romeo', 'x').first());
  const b = await challenge(new ScramMechanism('SHA-1', false, { unknownUserSecret: secret }).start(context()),
    new ScramClient('SHA-1', 'romeo', 'x').first());
  t.equal(a.toString().split(',').slice(1).join(), b.toString().split(',').slice(1).join(),
    'nodes sharing the secret show the same salt and iterations');
});

t.test('a tampered nonce or channel-binding attribute fails', async (t) => {
  const mechanism = new ScramMechanism('SHA-256', false);
  for (const tamper of [{ nonce: 'AAAA' }, { nonce: 'prefix-only' }, { c: 'eSws' }, { c: Buffer.from('n,a=juliet@example.com,').toString('base64') }]) {
    const client = new ScramClient('SHA-256', 'juliet', 's3cret');
    const exchange = mechanism.start(context({ users }));
    const serverFirst = await challenge(exchange, client.first());
    await t.rejects(exchange.step(client.final(serverFirst, tamper)), { name: 'SaslFailure', condition: 'not-authorized' }, JSON.stringify(tamper));
  }
  // A nonce that does not start with the client's.
  const client = new ScramClient('SHA-256', 'juliet', 's3cret');
  const exchange = mechanism.start(context({ users }));
  const serverFirst = await challenge(exchange, client.first());
  const serverPart = serverFirst.toString().split(',')[0].slice(2 + client.clientNonce.length);
  await t.rejects(exchange.step(client.final(serverFirst, { nonce: `x${serverPart}` })), { name: 'SaslFailure', condition: 'not-authorized' });
});

t.test('malformed client-first-messages', async (t) => {
  const mechanism = new ScramMechanism('SHA-256', false);
  const cases: [string, string][] = [
    ['n,,', 'malformed-request'],
    ['n,,n=juliet', 'malformed-request'],
    ['n,,r=abc', 'malformed-request'],
    ['n,,r=abc,n=juliet', 'malformed-request'],
    ['x,,n=juliet,r=abc', 'malformed-request'],
    ['n,x=y,n=juliet,r=abc', 'malformed-request'],
    ['n,,m=ext,n=juliet,r=abc', 'malformed-request'],
    ['n,,n=jul=41iet,r=abc', 'malformed-request'],
    ['n,,n=,r=abc', 'malformed-request'],
    ['n,,n=juliet,r=', 'malformed-request'],
    ['n,,n=juliet,r=abc,=x', 'malformed-request'],
    ['n,,n=juliet,r=abc\u0000', 'malformed-request'],
    ['p=tls-exporter,,n=juliet,r=abc', 'malformed-request'],
    ['n,,n=bad user,r=abc', 'not-authorized'],
  ];
  for (const [message, condition] of cases) {
    await t.rejects(mechanism.start(context({ users })).step(Buffer.from(message)), { name: 'SaslFailure', condition }, JSON.stringify(message));
  }
  await t.rejects(mechanism.start(context({ users })).step(Buffer.from([0x6e, 0x2c, 0x2c, 0x6e, 0x3d, 0xff, 0x2c, 0x72, 0x3d, 0x61])),
    { name: 'SaslFailure', condition: 'incorrect-encoding' }, 'invalid UTF-8');
  t.match(await mechanism.start(context({ users })).step(Buffer.from('n,,n=juliet,r=abc,x=ignored')), { kind: 'challenge' },
    'unknown optional extensions are ignored');
});

t.test('malformed client-final-messages', async (t) => {
  const mechanism = new ScramMechanism('SHA-256', false);
  const client = new ScramClient('SHA-256', 'juliet', 's3cret');
  const cases: ((good: string) => string)[] = [
    (g) => g.replace(/,p=.*$/, ''), // no proof
    (g) => g.replace(/^c=biws,/, ''), // no channel binding
    (g) => g.replace(/r=[^,]*,/, ''), // no nonce
    (g) => g.replace('c=biws', 'c=bi*s'), // bad base64
    (g) => g.replace(/p=([^,]*)$/, 'p=$1$1'), // bad base64 (length)
    (g) => g.replace(/,p=/, ',x=1,p=').replace(/,p=.*$/, ',p=AAAA'), // wrong proof length
  ];
  const expected = ['malformed-request', 'malformed-request', 'malformed-request', 'incorrect-encoding', 'incorrect-encoding', 'not-authorized'];
  for (let i = 0; i < cases.length; i++) {
    const exchange = mechanism.start(context({ users }));
    const serverFirst = await challenge(exchange, client.first());
    const bad = cases[i](client.final(serverFirst).toString());
    await t.rejects(exchange.step(Buffer.from(bad)), { name: 'SaslFailure', condition: expected[i] }, bad);
  }
});

t.test('y,, is a downgrade when this connection offers channel binding', async (t) => {
  const mechanism = new ScramMechanism('SHA-256', false);
  const cb = { 'tls-exporter': randomBytes(32) };
  await t.rejects(login(mechanism, context({ users, channelBindings: cb }), new ScramClient('SHA-256', 'juliet', 's3cret', 'y,,')),
    { name: 'SaslFailure', condition: 'not-authorized' });
  const step = await login(mechanism, context({ users }), new ScramClient('SHA-256', 'juliet', 's3cret', 'y,,'));
  t.equal(step.kind, 'success', 'y,, is fine without channel binding on offer');
});

t.test('SCRAM-*-PLUS binds to the channel', async (t) => {
  const exporter = randomBytes(32);
  const cb = { 'tls-exporter': exporter, 'tls-server-end-point': randomBytes(32) };
  for (const hash of ['SHA-1', 'SHA-256'] as const) {
    const plus = new ScramMechanism(hash, true);
    t.equal(plus.name, `SCRAM-${hash}-PLUS`);
    t.ok(plus.needsChannelBinding && plus.needsTls);
    const client = new ScramClient(hash, 'juliet', 's3cret', 'p=tls-exporter,,', exporter);
    const step = await login(plus, context({ users, channelBindings: cb }), client);
    t.match(step, { kind: 'success', username: 'juliet' }, `${hash}-PLUS with the right binding data`);
    t.ok(client.serverSignatureOk(step.kind === 'success' ? step.data : undefined));
  }
  const plus = new ScramMechanism('SHA-256', true);
  await t.rejects(login(plus, context({ users, channelBindings: cb }),
    new ScramClient('SHA-256', 'juliet', 's3cret', 'p=tls-exporter,,', randomBytes(32))), { name: 'SaslFailure', condition: 'not-authorized' },
  'wrong binding data (a man in the middle)');
  await t.rejects(login(plus, context({ users, channelBindings: cb }),
    new ScramClient('SHA-256', 'juliet', 's3cret', 'p=tls-server-end-point,,', exporter)), { name: 'SaslFailure', condition: 'not-authorized' },
  'binding data of another type');
  await t.rejects(plus.start(context({ users, channelBindings: cb })).step(Buffer.from('p=tls-unique,,n=juliet,r=abc')),
    { name: 'SaslFailure', condition: 'not-authorized' }, 'a type this connection cannot provide');
  await t.rejects(plus.start(context({ users, channelBindings: cb })).step(Buffer.from('n,,n=juliet,r=abc')),
    { name: 'SaslFailure', condition: 'malformed-request' }, '-PLUS without p=');
  await t.rejects(plus.start(context({ users, channelBindings: cb })).step(Buffer.from('p=tls exporter,,n=juliet,r=abc')),
    { name: 'SaslFailure', condition: 'malformed-request' }, 'bad cb-name');
});

t.test('authzid must be the authenticated bare JID', async (t) => {
  const mechanism = new ScramMechanism('SHA-256', false);
  const ok = await login(mechanism, context({ users }), new ScramClient('SHA-256', 'juliet', 's3cret', 'n,a=Juliet@Example.com,'));
  t.match(ok, { kind: 'success', username: 'juliet' });
  for (const authzid of ['romeo@example.com', 'juliet@example.net', 'juliet@example.com/balcony', 'bad user@example.com']) {
    await t.rejects(login(mechanism, context({ users }), new ScramClient('SHA-256', 'juliet', 's3cret', `n,a=${authzid},`)),
      { name: 'SaslFailure', condition: 'invalid-authzid' }, authzid);
  }
});

t.test('the exchange is a state machine: nothing after success or failure', async (t) => {
  const mechanism = new ScramMechanism('SHA-256', false);
  const client = new ScramClient('SHA-256', 'juliet', 's3cret');
  const exchange = mechanism.start(context({ users }));
  t.same(await exchange.step(Buffer.alloc(0)), { kind: 'challenge', data: Buffer.alloc(0) },
    'no initial response: an empty challenge asks for it');
  const serverFirst = await challenge(exchange, client.first());
  const final = client.final(serverFirst);
  t.equal((await exchange.step(final)).kind, 'success');
  await t.rejects(exchange.step(final), { name: 'SaslFailure', condition: 'malformed-request' }, 'step after success');

  const failed = mechanism.start(context({ users }));
  await t.rejects(failed.step(Buffer.from('garbage')), SaslFailure);
  await t.rejects(failed.step(client.first()), { name: 'SaslFailure', condition: 'malformed-request' }, 'step after failure');

  const twiceEmpty = mechanism.start(context({ users }));
  await twiceEmpty.step(Buffer.alloc(0));
  await t.rejects(twiceEmpty.step(Buffer.alloc(0)), { name: 'SaslFailure', condition: 'malformed-request' });
});

t.test('storage errors are temporary-auth-failure', async (t) => {
  await t.rejects(login(new ScramMechanism('SHA-256', false), context({ users, failLookups: true }),
    new ScramClient('SHA-256', 'juliet', 's3cret')), { name: 'SaslFailure', condition: 'temporary-auth-failure' });
});

t.test('deriveScramCredential and verifyPassword', async (t) => {
  const salt = Buffer.from('QSXCR+Q6sek8bf92', 'base64');
  const cred: ScramCredential = deriveScramCredential('pencil', 'SHA-1', 4096, salt);
  t.equal(cred.salt, 'QSXCR+Q6sek8bf92');
  t.equal(cred.iterations, 4096);
  // RFC 5802 §5: StoredKey = H(HMAC(SaltedPassword, "Client Key")), with SaltedPassword from the vector.
  const salted = pbkdf2Sync('pencil', salt, 4096, 20, 'sha1');
  t.equal(cred.storedKey, createHash('sha1').update(createHmac('sha1', salted).update('Client Key').digest()).digest('base64'));
  t.equal(cred.serverKey, createHmac('sha1', salted).update('Server Key').digest('base64'));
  t.equal(Buffer.from(deriveScramCredential('x', 'SHA-256', 1).salt, 'base64').length, 16, 'random 16-byte salt');
  t.not(deriveScramCredential('x', 'SHA-256', 1).salt, deriveScramCredential('x', 'SHA-256', 1).salt);
  t.throws(() => deriveScramCredential('x', 'SHA-256', 0), RangeError);
  t.throws(() => deriveScramCredential('a\u0007b', 'SHA-256', 1), 'SASLprep-prohibited password');

  t.ok(verifyPassword('pencil', cred, 'SHA-1'));
  t.notOk(verifyPassword('pencil!', cred, 'SHA-1'));
  t.notOk(verifyPassword('pencil', cred, 'SHA-256'), 'a credential checks only with its own hash');
  t.ok(verifyPassword('s3cret', juliet['SHA-256'], 'SHA-256'));
  t.ok(verifyPassword('s3cret', juliet['SHA-1'], 'SHA-1'));
  t.ok(await verifyPasswordAsync('s3cret', juliet['SHA-256'], 'SHA-256'));
  t.notOk(await verifyPasswordAsync('S3cret', juliet['SHA-256'], 'SHA-256'));
  // SASLprep: soft hyphen maps to nothing, NO-BREAK SPACE to a space.
  const prepped = deriveScramCredential('pass word', 'SHA-256', 100);
  t.ok(verifyPassword('pa\u00ADss\u00A0word', prepped, 'SHA-256'));

  const both = await deriveScramCredentialsAsync('tybalt', 2000);
  t.ok(verifyPassword('tybalt', both['SHA-1'], 'SHA-1') && verifyPassword('tybalt', both['SHA-256'], 'SHA-256'));
  const step = await login(new ScramMechanism('SHA-1', false), context({ users: { tybalt: both } }),
    new ScramClient('SHA-1', 'tybalt', 'tybalt'));
  t.equal(step.kind, 'success', 'derived credentials work with the SCRAM exchange');
});

t.test('mechanisms are offered strongest first, -PLUS only with channel binding, PLAIN only over TLS', async (t) => {
  t.same(MECHANISMS.map((m) => m.name), ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN']);
  t.same(offeredMechanisms(true, true).map((m) => m.name), ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN']);
  t.same(offeredMechanisms(true, false).map((m) => m.name), ['SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN']);
  t.same(offeredMechanisms(false, false).map((m) => m.name), ['SCRAM-SHA-256', 'SCRAM-SHA-1']);
});

// ---------------------------------------------------------------------------------------------
// Channel binding over real TLS connections.

const TICKET_KEYS = randomBytes(48);

interface TlsPair { server: tls.TLSSocket; client: tls.TLSSocket; close(): void }

async function tlsPair(
  pems: { private: string; cert: string }, maxVersion: tls.SecureVersion, session?: Buffer,
): Promise<TlsPair & { session: Promise<Buffer> }> {
  // Shared ticket keys, so that a session from one server resumes on the next.
  const server = tls.createServer({ key: pems.private, cert: pems.cert, maxVersion, ticketKeys: TICKET_KEYS });
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'secureConnection') as Promise<[tls.TLSSocket]>;
  const client = tls.connect({
    host: '127.0.0.1', port: (server.address() as AddressInfo).port, rejectUnauthorized: false, maxVersion, session,
  });
  client.on('error', () => {});
  const newSession = once(client, 'session').then(([s]) => s as Buffer);
  await once(client, 'secureConnect');
  const [serverSocket] = await accepted;
  serverSocket.on('error', () => {});
  return {
    server: serverSocket,
    client,
    session: newSession,
    close: () => { client.destroy(); serverSocket.destroy(); server.close(); },
  };
}

t.test('channel binding data agrees on both ends of a real TLS connection', async (t) => {
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec', curve: 'P-256', algorithm: 'sha256' });

  t.test('TLS 1.3: tls-exporter and tls-server-end-point advertised, tls-unique accepted', async (t) => {
    const pair = await tlsPair(pems, 'TLSv1.3');
    t.teardown(pair.close);
    t.equal(pair.server.getProtocol(), 'TLSv1.3');
    t.same(availableChannelBindings(pair.server), ['tls-exporter', 'tls-server-end-point']);
    const exporter = channelBindingFor(pair.server, 'tls-exporter');
    t.ok(exporter && exporter.length === 32);
    t.same(exporter, pair.client.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0)));
    // Not advertised on TLS 1.3, but computed as OpenSSL-based clients (CPython's ssl: slixmpp) do: the client's Finished.
    t.same(channelBindingFor(pair.server, 'tls-unique'), pair.client.getFinished(), 'tls-unique on TLS 1.3 is the client Finished, as the client computes it');
    const endPoint = createHash('sha256').update(pair.client.getPeerCertificate(true).raw).digest();
    t.same(channelBindingFor(pair.server, 'tls-server-end-point'), endPoint);
    t.equal(channelBindingFor(pair.server, 'tls-bogus'), undefined);

    // A whole SCRAM-SHA-256-PLUS login bound to this connection.
    const ctx: SaslContext = { ...context({ users }), channelBinding: (type) => channelBindingFor(pair.server, type) };
    const clientCb = pair.client.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0));
    const step = await login(new ScramMechanism('SHA-256', true), ctx,
      new ScramClient('SHA-256', 'juliet', 's3cret', 'p=tls-exporter,,', clientCb));
    t.match(step, { kind: 'success', username: 'juliet' });
  });

  t.test('TLS 1.2: tls-unique is the client Finished message', async (t) => {
    const pair = await tlsPair(pems, 'TLSv1.2');
    t.teardown(pair.close);
    t.equal(pair.server.getProtocol(), 'TLSv1.2');
    t.same(availableChannelBindings(pair.server), ['tls-unique', 'tls-server-end-point']);
    const unique = channelBindingFor(pair.server, 'tls-unique');
    t.ok(unique && unique.length > 0);
    t.same(unique, pair.client.getFinished(), "server's view equals the client's first Finished");
    t.equal(channelBindingFor(pair.server, 'tls-exporter'), undefined, 'no tls-exporter below TLS 1.3');

    const ctx: SaslContext = { ...context({ users }), channelBinding: (type) => channelBindingFor(pair.server, type) };
    const step = await login(new ScramMechanism('SHA-1', true), ctx,
      new ScramClient('SHA-1', 'juliet', 's3cret', 'p=tls-unique,,', pair.client.getFinished()!));
    t.match(step, { kind: 'success', username: 'juliet' });
  });

  t.test('TLS 1.2 resumed session: tls-unique is the server Finished message', async (t) => {
    const first = await tlsPair(pems, 'TLSv1.2');
    const session = await first.session;
    first.close();
    const pair = await tlsPair(pems, 'TLSv1.2', session);
    t.teardown(pair.close);
    t.ok(pair.server.isSessionReused(), 'abbreviated handshake');
    t.same(channelBindingFor(pair.server, 'tls-unique'), pair.client.getPeerFinished(),
      'in an abbreviated handshake the server sends the first Finished');
    t.notSame(channelBindingFor(pair.server, 'tls-unique'), pair.client.getFinished());
  });
});
