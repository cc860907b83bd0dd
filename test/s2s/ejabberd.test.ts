import t from 'tap';
import { ejabberdMissing, startEjabberd } from '../helpers/ejabberd';
import { startDomains } from '../helpers/federation';
import { checkExternalBothWays, federatesWith, startNamedServer } from '../helpers/interop';
import { TestDns } from '../helpers/dns';
import { TestCa } from '../helpers/test-ca';

// Interop with ejabberd from Debian, as with Prosody: dialback over STARTTLS, self-signed
// certificates, each server on its own loopback address with 5269, that address being its domain.
t.test('federation with ejabberd: messages, presence subscriptions and IQs, both ways', async (t) => {
  const missing = ejabberdMissing();
  if (missing) {
    t.skip(`ejabberd interop: ${missing}`, () => undefined);
    return;
  }
  const ejabberd = await startEjabberd(t, '127.0.0.5');
  const [ours] = await startDomains(t, ['127.0.0.4'], [], {}, { address: '127.0.0.4', s2sPort: 5269 });
  await federatesWith(t, ejabberd, ours);
});

// On names found through DNS (Erlang's resolver pointed at the test's name server) and with
// certificates from a CA both trust; ejabberd runs without dialback here, so its streams with us
// stand on SASL EXTERNAL alone, and so do ours (--s2s-verify-certs).
t.test('federation with ejabberd on DNS names with CA certificates: SASL EXTERNAL both ways', async (t) => {
  const missing = ejabberdMissing();
  if (missing) {
    t.skip(`ejabberd interop: ${missing}`, () => undefined);
    return;
  }
  const dns = await TestDns.start(t);
  const ca = await TestCa.create();
  const ejabberd = await startEjabberd(t, '127.0.0.7', { named: { domain: 'ejabberd.example', dns }, ca });
  const ours = await startNamedServer(t, 'ours.example', dns, ca, { srvTarget: '127.0.0.1' });
  await federatesWith(t, ejabberd, ours);
  checkExternalBothWays(t, ours, ejabberd);
});
