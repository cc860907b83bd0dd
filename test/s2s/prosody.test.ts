import t from 'tap';
import { startDomains } from '../helpers/federation';
import { prosodyMissing, startProsody } from '../helpers/prosody';
import { nextStanza, xml } from '../helpers/server';
import { subscribe } from '../helpers/subscriptions';

const WAIT_MS = 30_000;
/** Our server and Prosody, each on its own loopback address with 5269, their domains being those addresses. */
const OURS = '127.0.0.2';
const PROSODY = '127.0.0.3';

// Interop with a server we did not write: Prosody from Debian, dialback over STARTTLS with
// self-signed certificates on both sides.
t.test('federation with Prosody: messages and presence subscriptions, both ways', async (t) => {
  const missing = prosodyMissing();
  if (missing) {
    t.skip(`Prosody interop: ${missing}`);
    return;
  }
  const prosody = await startProsody(t, PROSODY);
  const [ours] = await startDomains(t, [OURS], [], {}, { address: OURS, s2sPort: 5269 });
  await prosody.register('petra', 'petra-password');
  await ours.addUser('oscar');
  const petra = await prosody.login('petra', 'petra-password', 'laptop');
  t.teardown(() => petra.stop().catch(() => undefined));
  const oscar = await ours.login('oscar', 'phone');
  // As real clients do: a resource that fetched its roster gets subscription presences (RFC 6121 §3.1.6).
  for (const client of [petra, oscar]) await client.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:roster' })), WAIT_MS);
  // What Prosody said, when something here failed.
  t.teardown(() => {
    if (!t.passing()) t.comment(prosody.log().split('\n').filter((l) => /s2s|error|warn|presence|roster/i.test(l)).slice(-60).join('\n'));
  });

  await t.test('a message from our user reaches the Prosody user, and the answer comes back', async (t) => {
    const heard = nextStanza(petra, (s) => s.is('message') && s.getChildText('body') === 'hello Prosody', WAIT_MS);
    await oscar.send(xml('message', { to: `petra@${PROSODY}`, type: 'chat' }, xml('body', {}, 'hello Prosody')));
    t.equal((await heard).attrs.from, `oscar@${OURS}/phone`);
    const back = nextStanza(oscar, (s) => s.is('message') && s.getChildText('body') === 'hello from Prosody', WAIT_MS);
    await petra.send(xml('message', { to: `oscar@${OURS}/phone`, type: 'chat' }, xml('body', {}, 'hello from Prosody')));
    t.equal((await back).attrs.from, `petra@${PROSODY}/laptop`);
  });

  await t.test('subscriptions both ways, then presence flows both ways', async (t) => {
    const petraSeen = nextStanza(oscar, (s) => s.is('presence') && s.attrs.from === `petra@${PROSODY}/laptop` && !s.attrs.type, WAIT_MS);
    await subscribe(oscar, petra);
    await petraSeen;
    t.pass('our user subscribed to the Prosody user and sees her presence');
    const oscarSeen = nextStanza(petra, (s) => s.is('presence') && s.attrs.from === `oscar@${OURS}/phone` && !s.attrs.type, WAIT_MS);
    await subscribe(petra, oscar);
    await oscarSeen;
    t.pass('the Prosody user subscribed to ours and sees his presence');
    const away = nextStanza(petra, (s) => s.is('presence') && s.attrs.from === `oscar@${OURS}/phone` && s.getChildText('show') === 'away', WAIT_MS);
    await oscar.send(xml('presence', {}, xml('show', {}, 'away')));
    await away;
    t.pass('a presence change reaches Prosody');
  });

  await t.test('IQs between the servers: ping both ways', async (t) => {
    const pong = await oscar.iqCaller.request(xml('iq', { type: 'get', to: PROSODY }, xml('ping', { xmlns: 'urn:xmpp:ping' })), WAIT_MS);
    t.equal(pong.attrs.type, 'result', 'Prosody answers our user\'s ping');
    const ours2 = await petra.iqCaller.request(xml('iq', { type: 'get', to: OURS }, xml('ping', { xmlns: 'urn:xmpp:ping' })), WAIT_MS);
    t.equal(ours2.attrs.type, 'result', 'we answer the Prosody user\'s ping');
  });
});
