import os from 'node:os';
import t from 'tap';
import { BoshRaw, HTTPBIND } from '../helpers/bosh';
import { httpRequest } from '../helpers/http';
import { presenceFrom, seedMutual, waitUntil } from '../helpers/im';
import { collect, nextStanza, PASSWORD, sleep, startTestServer, xml, type TestServer } from '../helpers/server';

const message = (to: string, body: string) => `<message xmlns='jabber:client' to='${to}' type='chat'><body>${body}</body></message>`;

/** A BOSH client on the https form of the port (where PLAIN is offered), logged in as `local`/raw. */
async function overBosh(server: TestServer, local: string, attrs: Record<string, string> = {}): Promise<BoshRaw> {
  const bosh = new BoshRaw(`https://127.0.0.1:${server.boshPort}/http-bind`);
  await bosh.login(local, 'raw', { wait: '2', ...attrs });
  return bosh;
}

const aliceOverBosh = (server: TestServer, attrs: Record<string, string> = {}) => overBosh(server, 'alice', attrs);

t.test('BOSH over raw HTTP (XEP-0124, XEP-0206)', async (t) => {
  const server = await startTestServer(t);
  await server.addUser('alice');
  await server.addUser('bob');
  await seedMutual(server, 'alice', 'bob');
  const url = `http://127.0.0.1:${server.boshPort}/http-bind`;

  await t.test('session creation: an unguessable sid naming its node, XEP-0206 attributes and the stream features', async (t) => {
    const bosh = new BoshRaw(url);
    const reply = await bosh.create({ hold: '5', wait: '300' });
    t.equal(reply.status, 200);
    t.equal(reply.headers['content-type'], 'text/xml; charset=utf-8');
    t.equal(reply.headers['access-control-allow-origin'], '*');
    const body = reply.body!;
    t.equal(body.attrs.xmlns, HTTPBIND);
    const [random, owner] = body.attrs.sid.split('.');
    t.ok(Buffer.from(random, 'base64url').length >= 16, 'at least 128 random bits');
    t.equal(Buffer.from(owner, 'base64url').toString(), os.hostname().toLowerCase(), 'the sid names the node that owns the session');
    t.not((await new BoshRaw(url).create()).body?.attrs.sid, body.attrs.sid, 'every session gets its own sid');
    t.equal(body.attrs.hold, '1', 'hold is at most 1');
    t.equal(body.attrs.wait, '60', 'wait is at most 60');
    t.equal(body.attrs.requests, '2');
    t.equal(body.attrs.polling, '2');
    t.equal(body.attrs.inactivity, '60');
    t.equal(body.attrs.ver, '1.11');
    t.equal(body.attrs['xmpp:version'], '1.0');
    t.equal(body.attrs['xmpp:restartlogic'], 'true');
    t.equal(body.attrs.from, 'localhost');
    t.ok(body.attrs.authid, 'authid is the stream id');
    t.match(reply.text, /<stream:features[^>]*><mechanisms xmlns="urn:ietf:params:xml:ns:xmpp-sasl">/);
    t.notMatch(reply.text, /PLAIN/, 'no PLAIN over plain http');
    t.match(reply.text, /xmlns:stream='http:\/\/etherx\.jabber\.org\/streams'/);
  });

  await t.test('https on the same port is secure: PLAIN is offered', async (t) => {
    const bosh = new BoshRaw(`https://127.0.0.1:${server.boshPort}/http-bind`);
    t.match((await bosh.create()).text, /<mechanism>PLAIN<\/mechanism>/);
  });

  await t.test('a full login by hand: SASL, xmpp:restart, bind; stanzas carry xmlns=jabber:client', async (t) => {
    const bosh = await aliceOverBosh(server);
    t.match(bosh.text, /<iq xmlns='jabber:client'[^>]*><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"><jid>alice@localhost\/raw<\/jid>/);
    await bosh.request({ type: 'terminate' });
  });

  await t.test('the CORS preflight is answered', async (t) => {
    const reply = await httpRequest(url, { method: 'OPTIONS', headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' } });
    t.equal(reply.status, 204);
    t.equal(reply.headers['access-control-allow-origin'], '*');
    t.match(reply.headers['access-control-allow-methods'], /POST/);
    t.match(reply.headers['access-control-allow-headers'], /Content-Type/i);
  });

  await t.test('requests that arrive out of order are processed in rid order', async (t) => {
    const bosh = await aliceOverBosh(server);
    const bob = await server.login('bob', { resource: 'tcp' });
    const seen = collect(bob);
    const rid = bosh.rid;
    bosh.rid += 2;
    const second = bosh.request({}, message('bob@localhost/tcp', 'second'), rid + 1);
    await sleep(100); // let the later rid arrive first
    const first = bosh.request({}, message('bob@localhost/tcp', 'first'), rid);
    const replies = await Promise.all([first, second]);
    t.same(replies.map((r) => r.status), [200, 200]);
    await waitUntil(() => seen.filter((s) => s.is('message')).length === 2, 5000, 'both messages');
    const bodies = seen.filter((s) => s.is('message')).map((s) => s.getChildText('body'));
    t.same(bodies, ['first', 'second'], 'the server forwarded rid N before rid N+1');
    await Promise.all([bosh.request({ type: 'terminate' }), bob.stop()]);
  });

  await t.test('a repeated rid gets the buffered response and is not processed twice', async (t) => {
    const bosh = await aliceOverBosh(server);
    const bob = await server.login('bob', { resource: 'tcp' });
    const seen = collect(bob);
    const rid = bosh.rid++;
    const text = bosh.bodyText({ rid: String(rid) }, `${message('bob@localhost/tcp', 'once')}<iq xmlns='jabber:client' type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
    const original = await BoshRaw.post(bosh.url, text);
    t.match(original.text, /id="p1"/, 'the response carries the ping result');
    const resent = await BoshRaw.post(bosh.url, text);
    t.equal(resent.status, 200);
    t.equal(resent.text, original.text, 'the resend gets the very same response');
    await bosh.request({}, message('bob@localhost/tcp', 'after'));
    await waitUntil(() => seen.some((s) => s.is('message') && s.getChildText('body') === 'after'), 5000, 'the later message');
    t.same(seen.filter((s) => s.is('message')).map((s) => s.getChildText('body')), ['once', 'after'], 'the message in the repeated request went once');
    await Promise.all([bosh.request({ type: 'terminate' }), bob.stop()]);
  });

  await t.test('acknowledgements: ack=1 is answered with ack=rid; a response the client acknowledged is not buffered any more', async (t) => {
    const bosh = new BoshRaw(url);
    const creationRid = bosh.rid;
    t.equal((await bosh.create({ ack: '1', wait: '1' })).body?.attrs.ack, String(creationRid));
    const rid = bosh.rid;
    const first = await bosh.request();
    t.equal((await BoshRaw.post(url, bosh.bodyText({ rid: String(rid) }))).text, first.text, 'buffered while unacknowledged');
    await bosh.request({ ack: String(rid) });
    const gone = await BoshRaw.post(url, bosh.bodyText({ rid: String(rid) }));
    t.equal(gone.body?.attrs.condition, 'item-not-found', 'acknowledged: gone from the buffer');
  });

  await t.test('a rid beyond the window ends the session with item-not-found', async (t) => {
    const bob = await server.login('bob', { resource: 'tcp' });
    const online = nextStanza(bob, presenceFrom('alice@localhost/raw'));
    const bosh = await aliceOverBosh(server);
    await online;
    const offline = nextStanza(bob, presenceFrom('alice@localhost/raw', 'unavailable'));
    const reply = await bosh.request({}, '', bosh.rid + 5);
    t.equal(reply.body?.attrs.type, 'terminate');
    t.equal(reply.body?.attrs.condition, 'item-not-found');
    t.ok(await offline, 'the session ended: the contact sees unavailable presence');
    const after = await bosh.request();
    t.equal(after.body?.attrs.condition, 'item-not-found', 'the sid is gone');
    await bob.stop();
  });

  await t.test('terminate ends the session and the contact sees unavailable presence', async (t) => {
    const bob = await server.login('bob', { resource: 'tcp' });
    const online = nextStanza(bob, presenceFrom('alice@localhost/raw'));
    const bosh = await aliceOverBosh(server);
    await online;
    const offline = nextStanza(bob, presenceFrom('alice@localhost/raw', 'unavailable'));
    const reply = await bosh.request({ type: 'terminate' }, "<presence xmlns='jabber:client' type='unavailable'><status>bye</status></presence>");
    t.equal(reply.body?.attrs.type, 'terminate');
    t.equal(reply.body?.attrs.condition, undefined, 'a clean end has no condition');
    t.equal((await offline).getChildText('status'), 'bye', 'the payloads of the terminate request are delivered first');
    t.equal((await bosh.request()).body?.attrs.condition, 'item-not-found');
    await bob.stop();
  });

  await t.test('with hold=1 an empty request is held until a stanza arrives for the client', async (t) => {
    await server.addUser('carol'); // no contacts: no presence traffic of her own
    const bob = await server.login('bob', { resource: 'tcp' });
    const bosh = await overBosh(server, 'carol', { wait: '60' });
    const pending = bosh.request();
    const early = await Promise.race([pending.then(() => 'answered'), sleep(300).then(() => 'held')]);
    t.equal(early, 'held', 'nothing to send: the request waits');
    await bob.send(xml('message', { to: 'carol@localhost/raw', type: 'chat' }, xml('body', {}, 'wake up')));
    const reply = await pending;
    t.match(reply.text, /<message xmlns='jabber:client'[^>]*><body>wake up<\/body>(<stanza-id [^>]*\/>)?<\/message>/);
    await Promise.all([bosh.request({ type: 'terminate' }), bob.stop()]);
  });

  await t.test('a second request answers the held one (hold=1), in rid order', async (t) => {
    const bosh = await aliceOverBosh(server, { wait: '60' });
    const held = bosh.request();
    const next = bosh.request({}, "<iq xmlns='jabber:client' type='get' id='p2' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    const first = await held;
    t.equal(first.status, 200, 'the held request is released by the next one');
    t.match((await next).text, /id="p2"/);
    await bosh.request({ type: 'terminate' });
  });

  await t.test('SASL2 over BOSH: one request authenticates and binds, without a restart; no stream management', async (t) => {
    const bosh = new BoshRaw(`https://127.0.0.1:${server.boshPort}/http-bind`);
    const created = await bosh.create({ wait: '2' });
    t.match(created.text, /<authentication xmlns="urn:xmpp:sasl:2">/);
    t.notMatch(created.text, /urn:xmpp:sm:3/, 'XEP-0198 is not offered inline on BOSH (BOSH has its own acknowledgements)');
    const auth = Buffer.from(`\0alice\0${PASSWORD}`).toString('base64');
    const since = bosh.received.length;
    await bosh.request({}, `<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>${auth}</initial-response><bind xmlns='urn:xmpp:bind:0'><tag>bosh</tag></bind></authenticate>`);
    const features = await bosh.waitFor(/<\/stream:features>/, since);
    t.match(bosh.received.slice(since).join(''), /<authorization-identifier>alice@localhost\/bosh\/[^<]+<\/authorization-identifier><bound xmlns="urn:xmpp:bind:0"\/>/);
    t.notMatch(features, /urn:xmpp:sm:3|xmpp-bind/, 'bound already; no stream management');
    await bosh.request({}, `<iq xmlns='jabber:client' type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
    await bosh.waitFor(/id='p1'|id="p1"/, since);
    await bosh.request({ type: 'terminate' });
  });

  await t.test('the wait period answers a held request with an empty body', async (t) => {
    const bosh = await aliceOverBosh(server, { wait: '1' });
    const started = Date.now();
    const reply = await bosh.request();
    t.equal(reply.text, `<body xmlns='${HTTPBIND}'/>`);
    t.ok(Date.now() - started >= 900, 'after about a second');
    await bosh.request({ type: 'terminate' });
  });

  await t.test('polling faster than the polling interval is a policy violation', async (t) => {
    const bosh = new BoshRaw(url);
    await bosh.create({ hold: '0', wait: '0' });
    await bosh.waitFor(/<stream:features/);
    const first = await bosh.request();
    t.equal(first.body?.attrs.type, undefined, 'one empty poll is fine');
    const second = await bosh.request();
    t.equal(second.body?.attrs.type, 'terminate');
    t.equal(second.body?.attrs.condition, 'policy-violation');
  });

  await t.test('a session for a domain this server does not serve is refused with host-unknown', async (t) => {
    const reply = await new BoshRaw(url).create({ to: 'elsewhere.example' });
    t.equal(reply.body?.attrs.type, 'terminate');
    t.equal(reply.body?.attrs.condition, 'host-unknown');
  });

  await t.test('a pause answers the held request at once and is allowed up to maxpause', async (t) => {
    const bosh = await aliceOverBosh(server, { wait: '60' });
    const held = bosh.request();
    const paused = await bosh.request({ pause: '30' });
    t.equal(paused.text, `<body xmlns='${HTTPBIND}'/>`);
    t.equal((await held).status, 200);
    t.equal((await bosh.request({ pause: '600' })).body?.attrs.condition, 'bad-request', 'longer than maxpause (120) is refused');
  });
});

t.test('the BOSH inactivity timeout ends a session whose client went away', async (t) => {
  const server = await startTestServer(t, { args: ['--bosh-inactivity=1'] });
  await server.addUser('alice');
  await server.addUser('bob');
  await seedMutual(server, 'alice', 'bob');
  const bob = await server.login('bob', { resource: 'tcp' });
  const online = nextStanza(bob, presenceFrom('alice@localhost/raw'));
  const bosh = await aliceOverBosh(server, { wait: '1' });
  t.equal(bosh.received[0].match(/inactivity='(\d+)'/)?.[1], '1');
  await online;
  // The client stops making requests: no request is held after `wait`, then `inactivity` runs out.
  const offline = await nextStanza(bob, presenceFrom('alice@localhost/raw', 'unavailable'), 6000);
  t.ok(offline, 'the contact sees unavailable presence');
  t.equal((await bosh.request()).body?.attrs.condition, 'item-not-found', 'the session is gone');
});

t.test('BOSH bad input is answered without harm to other sessions', async (t) => {
  const server = await startTestServer(t, { args: ['--max-stanza-size=10000'] });
  await server.addUser('alice');
  const url = `http://127.0.0.1:${server.boshPort}/http-bind`;
  const other = await aliceOverBosh(server, { wait: '60' });
  let pings = 0;
  const otherStillWorks = async () => {
    const id = `alive-${++pings}`;
    const pong = await other.expect({}, `<iq xmlns='jabber:client' type='get' id='${id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`, new RegExp(`id="${id}"`));
    return /type="result"/.test(pong);
  };

  await t.test('a body that is not XML is bad-request', async (t) => {
    const reply = await BoshRaw.post(url, 'this is not <xml');
    t.equal(reply.status, 400);
    t.equal(reply.body?.attrs.type, 'terminate');
    t.equal(reply.body?.attrs.condition, 'bad-request');
    t.ok(await otherStillWorks(), 'another BOSH session goes on');
  });

  await t.test('XML that is not a <body/> in the httpbind namespace is bad-request', async (t) => {
    t.equal((await BoshRaw.post(url, "<body rid='1'/>")).body?.attrs.condition, 'bad-request');
    t.equal((await BoshRaw.post(url, "<message xmlns='jabber:client'/>")).body?.attrs.condition, 'bad-request');
  });

  await t.test('comments, DTDs and entities are refused like on TCP', async (t) => {
    t.equal((await BoshRaw.post(url, `<!DOCTYPE x [<!ENTITY a 'b'>]><body xmlns='${HTTPBIND}' rid='1'/>`)).body?.attrs.condition, 'bad-request');
    t.equal((await BoshRaw.post(url, `<body xmlns='${HTTPBIND}' rid='1'><!-- hi --></body>`)).body?.attrs.condition, 'bad-request');
  });

  await t.test('a request for an unknown sid is item-not-found', async (t) => {
    const reply = await BoshRaw.post(url, `<body xmlns='${HTTPBIND}' rid='5' sid='no-such-session'/>`);
    t.equal(reply.status, 200);
    t.equal(reply.body?.attrs.type, 'terminate');
    t.equal(reply.body?.attrs.condition, 'item-not-found');
    t.ok(await otherStillWorks());
  });

  await t.test('a request larger than the limit is refused with 413', async (t) => {
    const reply = await BoshRaw.post(url, `<body xmlns='${HTTPBIND}' rid='1'>${message('a@localhost', 'x'.repeat(20000))}</body>`);
    t.equal(reply.status, 413);
    t.equal(reply.body?.attrs.condition, 'policy-violation');
    t.ok(await otherStillWorks());
  });

  await t.test('a session request without a rid is bad-request', async (t) => {
    const reply = await BoshRaw.post(url, `<body xmlns='${HTTPBIND}' to='localhost' ver='1.11'/>`);
    t.equal(reply.body?.attrs.condition, 'bad-request');
  });

  await t.test('other paths and methods', async (t) => {
    t.equal((await httpRequest(`http://127.0.0.1:${server.boshPort}/elsewhere`)).status, 404);
    t.equal((await httpRequest(url, { method: 'PUT' })).status, 405);
    t.match((await httpRequest(url)).text, /BOSH/, 'GET explains the endpoint');
  });

  await other.request({ type: 'terminate' });
});
