import t from 'tap';
import { startDomains } from '../helpers/federation';
import { federatesWith } from '../helpers/interop';
import { prosodyMissing, startProsody } from '../helpers/prosody';

// Interop with a server we did not write: Prosody from Debian, dialback over STARTTLS with
// self-signed certificates on both sides. Each server has its own loopback address with 5269, and
// that address is its domain (an IP-literal domain needs no DNS).
t.test('federation with Prosody: messages, presence subscriptions and IQs, both ways', async (t) => {
  const missing = prosodyMissing();
  if (missing) {
    t.skip(`Prosody interop: ${missing}`);
    return;
  }
  const prosody = await startProsody(t, '127.0.0.3');
  const [ours] = await startDomains(t, ['127.0.0.2'], [], {}, { address: '127.0.0.2', s2sPort: 5269 });
  await federatesWith(t, prosody, ours);
});
