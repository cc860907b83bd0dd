import t from 'tap';
import type { ScramCredentials, ScramHash } from '../../server/storage/types';
import type { SaslContext } from '../../server/c2s/sasl/mechanism';
import { PlainMechanism } from '../../server/c2s/sasl/plain';
import { deriveScramCredential, deriveScramCredentials } from '../../server/c2s/sasl/scram';

const users: Record<string, Partial<ScramCredentials>> = {
  juliet: deriveScramCredentials('s3cret', 1000),
  nurse: { 'SHA-1': deriveScramCredential('old-account', 'SHA-1', 1000) },
  romeo: deriveScramCredentials('pass word', 1000),
};

function context(lookups: [string, ScramHash][] = [], failLookups = false): SaslContext {
  return {
    domain: 'example.com',
    secure: true,
    channelBinding: () => undefined,
    lookupCredentials: async (username, hash) => {
      lookups.push([username, hash]);
      if (failLookups) throw new Error('database down');
      return users[username]?.[hash];
    },
  };
}

const plain = new PlainMechanism();
const auth = (message: string | Buffer, ctx = context()) =>
  plain.start(ctx).step(typeof message === 'string' ? Buffer.from(message, 'utf8') : message);

t.test('PLAIN is only for TLS streams and needs no channel binding', async (t) => {
  t.equal(plain.name, 'PLAIN');
  t.equal(plain.needsTls, true);
  t.equal(plain.needsChannelBinding, false);
});

t.test('the right password logs in with the prepared username', async (t) => {
  const lookups: [string, ScramHash][] = [];
  t.same(await auth('\0juliet\0s3cret', context(lookups)), { kind: 'success', username: 'juliet' });
  t.same(lookups, [['juliet', 'SHA-256']], 'checked against the SHA-256 credential');
  t.same(await auth('\0JULIET\0s3cret'), { kind: 'success', username: 'juliet' }, 'username is case-folded');
  t.same(await auth('\0\uFF4A\uFF55\uFF4C\uFF49\uFF45\uFF54\0s3cret'), { kind: 'success', username: 'juliet' }, 'and width-mapped');
  t.same(await auth('\0juliet@example.com\0s3cret'), { kind: 'success', username: 'juliet' }, 'a bare JID as authcid');
});

t.test('accounts with only a SHA-1 credential fall back to it', async (t) => {
  const lookups: [string, ScramHash][] = [];
  t.same(await auth('\0nurse\0old-account', context(lookups)), { kind: 'success', username: 'nurse' });
  t.same(lookups, [['nurse', 'SHA-256'], ['nurse', 'SHA-1']]);
});

t.test('wrong password and unknown user both fail with not-authorized', async (t) => {
  await t.rejects(auth('\0juliet\0wrong'), { name: 'SaslFailure', condition: 'not-authorized' });
  await t.rejects(auth('\0juliet\0S3CRET'), { name: 'SaslFailure', condition: 'not-authorized' }, 'passwords are case-sensitive');
  await t.rejects(auth('\0tybalt\0s3cret'), { name: 'SaslFailure', condition: 'not-authorized' });
  await t.rejects(auth('\0juliet@example.net\0s3cret'), { name: 'SaslFailure', condition: 'not-authorized' }, 'JID at another domain');
  await t.rejects(auth('\0bad user\0s3cret'), { name: 'SaslFailure', condition: 'not-authorized' }, 'username that is no localpart');
});

t.test('authzid must be empty or the bare JID of the user', async (t) => {
  t.same(await auth('juliet@example.com\0juliet\0s3cret'), { kind: 'success', username: 'juliet' });
  t.same(await auth('Juliet@EXAMPLE.com\0juliet\0s3cret'), { kind: 'success', username: 'juliet' });
  for (const authzid of ['romeo@example.com', 'juliet@example.net', 'juliet@example.com/balcony', 'juliet', '@@']) {
    await t.rejects(auth(`${authzid}\0juliet\0s3cret`), { name: 'SaslFailure', condition: 'invalid-authzid' }, authzid);
  }
});

t.test('malformed messages', async (t) => {
  for (const message of ['juliet s3cret', 'juliet\0s3cret', '\0\0s3cret', '\0juliet\0', '\0juliet\0s3cret\0', 'a\0b\0c\0d']) {
    await t.rejects(auth(message), { name: 'SaslFailure', condition: 'malformed-request' }, JSON.stringify(message));
  }
  await t.rejects(auth(Buffer.from([0, 0x6a, 0xc3, 0x28, 0, 0x61])), { name: 'SaslFailure', condition: 'incorrect-encoding' }, 'invalid UTF-8');
});

t.test('SASLprep makes equivalent passwords equal', async (t) => {
  t.same(await auth('\0juliet\0s3\u00ADcret'), { kind: 'success', username: 'juliet' }, 'soft hyphen maps to nothing');
  t.same(await auth('\0romeo\0pass\u00A0word'), { kind: 'success', username: 'romeo' }, 'NO-BREAK SPACE maps to space');
  t.same(await auth('\0romeo\0pass\u2003word'), { kind: 'success', username: 'romeo' }, 'EM SPACE maps to space');
  await t.rejects(auth('\0juliet\0s3cret\u0007'), { name: 'SaslFailure', condition: 'not-authorized' }, 'prohibited character');
});

t.test('no initial response: an empty challenge, then the credentials', async (t) => {
  const exchange = plain.start(context());
  t.same(await exchange.step(Buffer.alloc(0)), { kind: 'challenge', data: Buffer.alloc(0) });
  t.same(await exchange.step(Buffer.from('\0juliet\0s3cret')), { kind: 'success', username: 'juliet' });
  await t.rejects(exchange.step(Buffer.from('\0juliet\0s3cret')), { name: 'SaslFailure', condition: 'malformed-request' }, 'nothing after success');

  const failed = plain.start(context());
  await t.rejects(failed.step(Buffer.from('\0juliet\0wrong')), { name: 'SaslFailure', condition: 'not-authorized' });
  await t.rejects(failed.step(Buffer.from('\0juliet\0s3cret')), { name: 'SaslFailure', condition: 'malformed-request' }, 'nothing after failure');
});

t.test('storage errors are temporary-auth-failure', async (t) => {
  await t.rejects(auth('\0juliet\0s3cret', context([], true)), { name: 'SaslFailure', condition: 'temporary-auth-failure' });
});
