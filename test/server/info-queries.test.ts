import t from 'tap';
import { SERVER_NAME, SERVER_VERSION } from '../../server/version';
import { startTestServer, xml } from '../helpers/server';

t.test('ping, version and time queries to the server', async (t) => {
  const server = await startTestServer(t);
  await server.addUser('alice');
  const alice = await server.login('alice', { resource: 'desk' });

  await t.test('XEP-0199: a ping to the server gets an empty result', async (t) => {
    const pong = await alice.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    t.equal(pong.attrs.type, 'result');
    t.equal(pong.attrs.from, 'localhost');
    t.equal(pong.getChildElements().length, 0, 'no payload');
    const own = await alice.iqCaller.request(xml('iq', { type: 'get' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    t.equal(own.attrs.type, 'result', 'a ping without a to address is answered too');
  });

  await t.test('XEP-0092: the server tells its name and version', async (t) => {
    const result = await alice.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('query', { xmlns: 'jabber:iq:version' })));
    const query = result.getChild('query', 'jabber:iq:version');
    t.ok(query, 'a jabber:iq:version query comes back');
    t.equal(query!.getChildText('name'), SERVER_NAME);
    t.equal(query!.getChildText('version'), SERVER_VERSION);
    t.match(query!.getChildText('version'), /\S/, 'the version is not empty');
  });

  await t.test('XEP-0202: the server tells its time in UTC with a zone offset', async (t) => {
    const before = Date.now();
    const result = await alice.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('time', { xmlns: 'urn:xmpp:time' })));
    const after = Date.now();
    const time = result.getChild('time', 'urn:xmpp:time');
    t.ok(time, 'a urn:xmpp:time element comes back');
    // XEP-0082 TZD: "Z" or ±hh:mm.
    t.match(time!.getChildText('tzo'), /^(Z|[+-]\d{2}:\d{2})$/, 'tzo is a XEP-0082 zone offset');
    const utc = time!.getChildText('utc') ?? '';
    // XEP-0082 DateTime in UTC: CCYY-MM-DDThh:mm:ss[.sss]Z.
    t.match(utc, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/, 'utc is a XEP-0082 DateTime ending in Z');
    const when = Date.parse(utc);
    t.ok(when >= before - 2000 && when <= after + 2000, `utc (${utc}) is close to now`);
  });

  await t.test('a query the server does not serve is service-unavailable', async (t) => {
    await t.rejects(
      alice.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('query', { xmlns: 'urn:example:nothing' }))),
      { name: 'StanzaError', condition: 'service-unavailable' },
    );
  });
});
