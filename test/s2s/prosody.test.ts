import t from 'tap';
import { TestDns } from '../helpers/dns';
import { startDomains } from '../helpers/federation';
import { checkExternalBothWays, federatesWith, startNamedServer } from '../helpers/interop';
import { MUC_ARGS, guestJoinsAndChats } from '../helpers/muc';
import { prosodyDnsMissing, prosodyMissing, startProsody } from '../helpers/prosody';
import { TestCa } from '../helpers/test-ca';


// Interop with a server we did not write: Prosody from Debian, dialback over STARTTLS with
// self-signed certificates on both sides. Each server has its own loopback address with 5269, and
// that address is its domain (an IP-literal domain needs no DNS).
t.test('federation with Prosody: messages, presence subscriptions and IQs, both ways', async (t) => {
  const missing = prosodyMissing();
  if (missing) {
    t.skip(`Prosody interop: ${missing}`, () => undefined);
    return;
  }
  const prosody = await startProsody(t, '127.0.0.3');
  const [ours] = await startDomains(t, ['127.0.0.2'], [], {}, { address: '127.0.0.2', s2sPort: 5269 });
  await federatesWith(t, prosody, ours);
});

// The same on names found through DNS (a name server the test runs; Prosody reaches it through
// libunbound) and with certificates from a CA every side trusts: both servers require valid
// certificates, so each proves its domain with SASL EXTERNAL. A Prosody user then joins one of
// our rooms, whose domain (muc.ours.example) Prosody finds by its SRV record.
t.test('federation with Prosody on DNS names with CA certificates: SASL EXTERNAL both ways, and a Prosody user in our room', async (t) => {
  const missing = prosodyDnsMissing();
  if (missing) {
    t.skip(`Prosody interop over DNS: ${missing}`, () => undefined);
    return;
  }
  const dns = await TestDns.start(t);
  const ca = await TestCa.create();
  const prosody = await startProsody(t, '127.0.0.6', { named: { domain: 'prosody.example', dns }, ca });
  const ours = await startNamedServer(t, 'ours.example', dns, ca, { args: MUC_ARGS });
  await federatesWith(t, prosody, ours);
  checkExternalBothWays(t, ours, prosody);

  await t.test('a Prosody user joins our room and chats in it', async (t) => {
    await ours.addUser('hilda');
    const hilda = await ours.login('hilda', 'h');
    await prosody.register('gus', 'gus-password');
    const gus = await prosody.login('gus', 'gus-password', 'g');
    t.teardown(() => gus.stop().catch(() => undefined));
    await guestJoinsAndChats(t, hilda, gus, 'lobby@muc.ours.example');
  });
});
