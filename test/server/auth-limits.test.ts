import t from 'tap';
import { authFailureKeys } from '../../server/c2s/stream';
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
});

// One address trying passwords across many accounts (each account under its own limit): past
// --max-address-auth-failures its password logins are slowed, whatever the account, and still
// succeed with the right password; other addresses are not slowed. Counted in the shared database,
// so spreading the guesses over the nodes of a cluster does not help.
t.test('one address guessing many accounts is slowed; the right password still works', async (t) => {
  const server = await startTestServer(t, { args: ['--max-address-auth-failures=4', '--max-account-auth-failures=3', '--connection-limits-exempt=10.9.9.9'] });
  for (const user of ['ann', 'ben']) await server.addUser(user);
  const port = server.tlsPort;
  const delayed = async () => {
    const text = await server.node.metrics.registry.getSingleMetricAsString('xmpp_auth_delayed_total');
    return Object.fromEntries([...text.matchAll(/by="(\w+)"[^}]*\} (\d+)/g)].map((m) => [m[1], Number(m[2])]));
  };
  t.same(await delayed(), { account: 0, address: 0 });
  for (const user of ['u1', 'u2', 'u3', 'ann']) t.equal(await attempt(port, '127.0.0.8', user, 'guess'), 'not-authorized', `a guess for ${user}`);
  t.equal(await server.node.storage.authFailures.count(authFailureKeys('x@localhost', '127.0.0.8:1').address, 300_000), 4, 'counted for the address, over every account (unknown ones too)');
  t.same(await delayed(), { account: 0, address: 0 }, 'nobody slowed yet');

  t.equal(await attempt(port, '127.0.0.8', 'ben', 'guess'), 'not-authorized', 'the next guess, for an account that has none');
  t.same(await delayed(), { account: 0, address: 1 }, 'was held back for the address');
  t.equal(await attempt(port, '127.0.0.9', 'ben', PASSWORD), 'success', 'Ben, from his own address, logs in');
  t.same(await delayed(), { account: 0, address: 1 }, 'without being held back');
  t.equal(await attempt(port, '127.0.0.8', 'ann', PASSWORD), 'success', 'someone behind the guessing address who knows the password still gets in');
  t.same(await delayed(), { account: 0, address: 2 }, 'slowed, not refused');
});
