import t from 'tap';
import { authFailureKeys } from '../../server/c2s/stream';
import { eventually } from '../helpers/cluster';
import { PASSWORD, RawConnection, STREAM_OPEN, startTestServer } from '../helpers/server';

/**
 * One SASL PLAIN attempt over direct TLS from `from` (a loopback address): the server's answer,
 * 'success' or the failure condition.
 */
async function attempt(port: number, from: string, user: string, password: string): Promise<string> {
  const conn = await RawConnection.connect(port, true, from);
  try {
    conn.write(STREAM_OPEN);
    await conn.waitFor(/<\/stream:features>/, 15_000);
    const plain = Buffer.from(`\0${user}\0${password}`).toString('base64');
    conn.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${plain}</auth>`);
    // A login of an account under attack may be held back for a few seconds, never refused.
    const text = await conn.waitFor(/<success|<failure[^>]*>\s*<([a-z-]+)/, 30_000);
    if (/<success/.test(text)) return 'success';
    return /<failure[^>]*>\s*<([a-z-]+)/.exec(text)![1];
  } finally {
    conn.destroy();
  }
}

// The issue this closes: 500 wrong passwords from anywhere made the owner's right password fail.
// Guessing now blocks the guessing address, and only slows everyone else.
t.test('password guessing never locks the owner out', async (t) => {
  const server = await startTestServer(t, { args: ['--max-account-auth-failures=3', '--auth-lockout=300'] });
  await server.addUser('owner');
  const port = server.tlsPort;
  const failures = server.node.storage.authFailures;

  for (let i = 0; i < 3; i++) t.equal(await attempt(port, '127.0.0.1', 'owner', `guess-${i}`), 'not-authorized', `guess ${i + 1} is a wrong password`);
  t.equal(await attempt(port, '127.0.0.1', 'owner', 'guess-4'), 'temporary-auth-failure', 'then the guessing address is stopped');
  t.equal(await attempt(port, '127.0.0.1', 'owner', PASSWORD), 'temporary-auth-failure', 'even with the right password: it cannot learn that it found it');
  t.equal(await attempt(port, '127.0.0.2', 'owner', PASSWORD), 'success', 'the owner, elsewhere, logs in');

  // Guesses from many addresses (a botnet): each address stays under the limit, the account is over it.
  for (const from of ['127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6']) t.equal(await attempt(port, from, 'owner', 'botnet-guess'), 'not-authorized');
  t.equal(await failures.count(authFailureKeys('owner@localhost', '127.0.0.3:1').client, 300_000), 1, 'counted per address');
  t.ok(await failures.count('owner@localhost', 300_000) >= 7, 'and per account');
  t.equal(await attempt(port, '127.0.0.2', 'owner', PASSWORD), 'success', 'the owner still logs in (slowed down, not refused)');
  t.equal(await attempt(port, '127.0.0.1', 'owner', PASSWORD), 'temporary-auth-failure', 'a success elsewhere does not free the guessing address');
  t.equal(await attempt(port, '127.0.0.7', 'someone-else', 'x'), 'not-authorized', 'other accounts are not affected');

  // The owner mistyped twice from 127.0.0.3 (one botnet guess counts there too), then got it right:
  // that address starts afresh, the account's count stays.
  const fromThree = authFailureKeys('owner@localhost', '127.0.0.3:1').client;
  t.equal(await attempt(port, '127.0.0.3', 'owner', 'typo'), 'not-authorized');
  t.equal(await failures.count(fromThree, 300_000), 2, 'two failures from that address');
  t.equal(await attempt(port, '127.0.0.3', 'owner', PASSWORD), 'success');
  await t.resolves(eventually('failures forgotten', async () => (await failures.count(fromThree, 300_000)) === 0, 15_000), 'a success forgets the failures from its own address');
  t.ok(await failures.count('owner@localhost', 300_000) >= 8, 'but not the account\'s');
});

