import t from 'tap';
import { ejabberdMissing, startEjabberd } from '../helpers/ejabberd';
import { startDomains } from '../helpers/federation';
import { federatesWith } from '../helpers/interop';

// Interop with ejabberd from Debian, as with Prosody: dialback over STARTTLS, self-signed
// certificates, each server on its own loopback address with 5269, that address being its domain.
t.test('federation with ejabberd: messages, presence subscriptions and IQs, both ways', async (t) => {
  const missing = ejabberdMissing();
  if (missing) {
    t.skip(`ejabberd interop: ${missing}`);
    return;
  }
  const ejabberd = await startEjabberd(t, '127.0.0.5');
  const [ours] = await startDomains(t, ['127.0.0.4'], [], {}, { address: '127.0.0.4', s2sPort: 5269 });
  await federatesWith(t, ejabberd, ours);
});
