import t from 'tap';
import { authFailureKeys } from '../../server/c2s/stream';
import { createHash, createHmac } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { parse as ltxParse, type Element } from 'ltx';
import { eventually } from '../helpers/cluster';
import { Device } from '../helpers/device';
import { parseJID } from '../../server/jid';
import { collect, PASSWORD, RawConnection, STREAM_OPEN, startTestServer, xml, type TestServer, type XmppClient } from '../helpers/server';

/** Generous: the suite runs on small, busy machines. */
const WAIT_MS = 20_000;
/** The condition a failed login rejects with ('no error' when it succeeds). */
const conditionOf = (login: Promise<unknown>) => login.then(() => 'no error', (err: { condition?: string }) => String(err.condition ?? err));

type Sm = { enabled: boolean; id: string; on(event: string, listener: () => void): void };
const smOf = (client: XmppClient) => (client as unknown as { streamManagement: Sm }).streamManagement;
const bodies = (stanzas: Element[]) => stanzas.filter((s) => s.is('message')).map((s) => s.getChildText('body'));
const socketOf = (client: XmppClient) => {
  const wrapper = (client as unknown as { socket: { socket?: { destroy(): void }; destroy?(): void } }).socket;
  return (wrapper.socket ?? wrapper) as { destroy(): void };
};

t.test('SASL2, Bind2 and FAST with @xmpp/client defaults', async (t) => {
  const server = await startTestServer(t);
  for (const user of ['alice', 'bob', 'carol', 'dave', 'erin']) await server.addUser(user);
  const tokens = server.node.storage.fastTokens;
  const c2s = `xmpp://127.0.0.1:${server.port}`;

  await t.test('one round trip logs in, binds a resource from the tag and enables stream management', async (t) => {
    const device = new Device(server.domain, 'alice');
    const alice = await device.connect(c2s);
    const jid = alice.jid!.toString();
    t.match(jid, /^alice@localhost\/phone\/[A-Za-z0-9_-]{10}$/, 'XEP-0386: the tag, then a part of the server\'s');
    await eventually('stream management enabled inline', () => smOf(alice).enabled && !!smOf(alice).id, WAIT_MS);
    t.ok(device.token, 'XEP-0484: the token asked for came with <success/>');
    t.equal(device.token!.mechanism, 'HT-SHA-256-NONE');
    t.match(device.token!.token, /^[A-Za-z0-9_-]{88}$/);
    const lifetime = Date.parse(device.token!.expiry) - Date.now();
    t.ok(lifetime > 20 * 86_400_000 && lifetime <= 21 * 86_400_000, 'valid for --fast-token-lifetime (21 days)');
    const session = server.node.sessions.get(parseJID(jid));
    t.ok(session, 'the server holds the session under that full JID');

    // Stanzas flow both ways on the same stream, which was never restarted.
    const bob = await server.login('bob');
    const seen = collect(alice);
    await alice.send(xml('presence'));
    await bob.send(xml('message', { to: jid, type: 'chat' }, xml('body', {}, 'hello')));
    await eventually('a message to the bound JID', () => bodies(seen).includes('hello'), WAIT_MS);
    const pong = await alice.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    t.equal(pong.attrs.type, 'result');
    await Promise.all([device.stopAll(), bob.stop()]);
  });

  await t.test('a FAST token logs in without the password, and the same client gets the same resource', async (t) => {
    const device = new Device(server.domain, 'carol');
    const first = await device.connect(c2s);
    const issued = device.token!;
    await first.stop();
    const again = await device.connect(c2s, 'not-the-password');
    t.equal(again.jid!.toString(), first.jid!.toString(), 'the resource is stable per user-agent id');
    t.same(device.token, issued, 'a fresh token is not replaced at once');
    const stored = await tokens.find('carol@localhost', clientKey(device.id), new Date());
    t.same(stored.map((s) => s.slot), ['current'], 'the used token became the client\'s current one');
    t.notOk(JSON.stringify(stored).includes(issued.token), 'the database holds a hash, not the token');
    await device.stopAll();
  });

  // Direct TLS is in the cluster test: @xmpp/client listens for the server's stream header only
  // once its own header's write has called back, and a server in the same process can answer sooner.
  await t.test('the same over secure WebSocket (tokens are only offered on encrypted streams)', async (t) => {
    for (const service of [`wss://127.0.0.1:${server.wsPort}/xmpp-websocket`]) {
      const device = new Device(server.domain, 'bob', 'web');
      const first = await device.connect(service);
      t.match(first.jid!.toString(), /^bob@localhost\/web\//, `${service}: bound with Bind2`);
      t.ok(device.token, `${service}: a token`);
      await first.stop();
      const again = await device.connect(service, 'not-the-password');
      t.equal(again.jid!.toString(), first.jid!.toString(), `${service}: the token logs in`);
      const pong = await again.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
      t.equal(pong.attrs.type, 'result');
      await device.stopAll();
    }
  });

  await t.test('a token in use for a day is replaced; the old one works until the new one is used', async (t) => {
    const device = new Device(server.domain, 'dave');
    await (await device.connect(c2s)).stop();
    await device.connect(c2s, 'wrong').then((c) => c.stop()); // the token is now the current one
    const old = device.token!;
    await server.node.storage.knex('fast_tokens').where({ user: 'dave@localhost' }).update({ issued_at: new Date(Date.now() - 2 * 86_400_000) });
    await (await device.connect(c2s, 'wrong')).stop();
    t.not(device.token!.token, old.token, 'the login with the aged token brought a new one');
    const fresh = device.token!;
    const key = clientKey(device.id);
    t.same((await tokens.find('dave@localhost', key, new Date())).map((s) => s.slot), ['next', 'current']);
    // The new token never reached the client (say): the old one still works, and being due, brings
    // another new one that replaces the unused one.
    device.token = old;
    await (await device.connect(c2s, 'wrong')).stop();
    t.pass('the old token still logs in');
    const newest = device.token!;
    t.not(newest.token, fresh.token);
    device.token = fresh;
    await t.rejects(device.connect(c2s, 'wrong'), 'a replaced token that was never used no longer works');
    device.token = newest;
    await (await device.connect(c2s, 'wrong')).stop();
    const left = await tokens.find('dave@localhost', key, new Date());
    t.same(left.map((s) => s.slot), ['current'], 'once the new one is used, the old one is gone');
    device.token = old;
    await t.rejects(device.connect(c2s, 'wrong'), 'the old token no longer works');
    await device.stopAll();
  });

  await t.test('a new password revokes the tokens; a stale token is no wrong password', async (t) => {
    const device = new Device(server.domain, 'erin');
    await (await device.connect(c2s)).stop();
    const stale = device.token!;
    const { deriveScramCredentials } = await import('../../server/c2s/sasl/scram');
    await server.node.storage.users.setCredentials('erin@localhost', deriveScramCredentials('new-password', 4096));
    t.same(await tokens.find('erin@localhost', clientKey(device.id), new Date()), []);
    const failuresBefore = await server.node.storage.authFailures.count('erin@localhost', 600_000);
    // @xmpp/client tries the token, is told it expired, and goes on with the password.
    const client = await device.connect(c2s, 'new-password');
    t.ok(client.jid, 'logged in with the new password after the token was refused');
    t.not(device.token!.token, stale.token, 'and got a new token');
    t.equal(await server.node.storage.authFailures.count('erin@localhost', 600_000), failuresBefore, 'the refused token did not count towards the lockout');
    await device.stopAll();
  });

  await t.test('an account locked out by password guessing still lets its devices in with their tokens', async (t) => {
    const device = new Device(server.domain, 'dave', 'own-phone');
    await (await device.connect(c2s)).stop();
    const { maxAccountAuthFailures, authLockout } = server.node.config.limits;
    // Guesses from this address (where the test's clients come from) lock the password out here.
    const guessed = authFailureKeys('dave@localhost', '127.0.0.1:1').client;
    for (let i = 0; i < maxAccountAuthFailures; i++) await server.node.storage.authFailures.record(guessed, authLockout * 1000);
    const attacker = new Device(server.domain, 'dave', 'attacker');
    t.equal(await conditionOf(attacker.connect(c2s)), 'temporary-auth-failure', 'the password is locked out');
    const own = await device.connect(c2s, 'not-the-password');
    t.ok(own.jid, 'the owner\'s device logs in with its token');
    await server.node.storage.authFailures.reset(guessed);
    await Promise.all([device.stopAll(), attacker.stopAll()]);
  });

  await t.test('a wrong password over SASL2 fails and counts; the stream stays open for another try', async (t) => {
    const device = new Device(server.domain, 'bob');
    const before = await server.node.storage.authFailures.count('bob@localhost', 600_000);
    t.equal(await conditionOf(device.connect(c2s, 'wrong')), 'not-authorized');
    t.equal(await server.node.storage.authFailures.count('bob@localhost', 600_000), before + 1);
    await device.stopAll();
  });

  await t.test('XEP-0198 inline: a cut connection resumes inside <authenticate/>, messages sent meanwhile arrive once', async (t) => {
    const device = new Device(server.domain, 'alice', 'tablet');
    const alice = await device.connect(c2s);
    (alice as unknown as { reconnect: { start(): void } }).reconnect.start();
    await eventually('stream management enabled', () => smOf(alice).enabled, WAIT_MS);
    await alice.send(xml('presence'));
    const jid = alice.jid!.toString();
    const bob = await server.login('bob');
    const seen = collect(alice);
    const resumed = new Promise<void>((resolve) => smOf(alice).on('resumed', resolve));
    const resumedBefore = server.node.streamManagement.counters.resumed;
    await bob.send(xml('message', { to: jid, type: 'chat' }, xml('body', {}, 'before')));
    await eventually('the first message arrived', () => bodies(seen).includes('before'), WAIT_MS);
    socketOf(alice).destroy();
    for (let i = 1; i <= 5; i++) await bob.send(xml('message', { to: jid, type: 'chat' }, xml('body', {}, `during ${i}`)));
    await resumed;
    t.equal(server.node.streamManagement.counters.resumed, resumedBefore + 1, 'resumed (with the FAST token, inline)');
    t.equal(alice.jid!.toString(), jid, 'the same session');
    await eventually('every message sent during the cut arrived', () => bodies(seen).filter((b) => b?.startsWith('during')).length >= 5, WAIT_MS);
    t.same(bodies(seen), ['before', 'during 1', 'during 2', 'during 3', 'during 4', 'during 5'], 'each once, in order');
    (alice as unknown as { reconnect: { stop(): void } }).reconnect.stop();
    await Promise.all([device.stopAll(), bob.stop()]);
  });
});

function clientKey(id: string): string {
  return createHash('sha256').update(id).digest('hex');
}

const SASL2 = 'urn:xmpp:sasl:2';
const b64 = (data: string | Buffer) => Buffer.from(data).toString('base64');

/** The last complete `<name …>…</name>` (or `<name …/>`) the server sent, parsed. */
function last(conn: RawConnection, name: string): Element {
  const matches = [...conn.text.matchAll(new RegExp(`<${name}(?:\\s[^>]*?)?(?:/>|>[\\s\\S]*?</${name}>)`, 'g'))];
  if (matches.length === 0) throw new Error(`no <${name}/> in ${conn.text}`);
  const text = matches[matches.length - 1][0];
  return ltxParse(text.startsWith('<stream:features') ? text.replace('<stream:features', '<stream:features xmlns:stream="http://etherx.jabber.org/streams"') : text) as Element;
}

/** A raw direct-TLS stream (TLS 1.3) up to its first features: what clients outside @xmpp/client send. */
async function rawStream(server: TestServer): Promise<RawConnection> {
  const conn = await RawConnection.connect(server.tlsPort, true);
  conn.write(STREAM_OPEN);
  await conn.waitFor(/<\/stream:features>/, WAIT_MS);
  return conn;
}

function htProof(token: string, label: 'Initiator' | 'Responder', cb: Buffer): Buffer {
  return createHmac('sha256', token).update(Buffer.concat([Buffer.from(label), cb])).digest();
}

function exporter(conn: RawConnection): Buffer {
  return (conn.socket as TLSSocket).exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0));
}

t.test('SASL2 inline requests that @xmpp/client does not make, over raw XML', async (t) => {
  const server = await startTestServer(t);
  await server.addUser('alice');
  await server.addUser('bob');
  const tokens = server.node.storage.fastTokens;
  const agent = crypto.randomUUID();
  const plain = b64(`\0alice\0${PASSWORD}`);
  const conns: RawConnection[] = [];
  t.teardown(() => conns.forEach((c) => c.destroy()));
  const open = async () => {
    const conn = await rawStream(server);
    conns.push(conn);
    return conn;
  };

  await t.test('the offer: mechanisms, Bind2 with its inline features, SM resumption and FAST with channel binding', async (t) => {
    const conn = await open();
    const features = last(conn, 'stream:features');
    const authentication = features.getChild('authentication', SASL2)!;
    t.ok(authentication, 'XEP-0388 is offered next to RFC 6120 SASL');
    t.same(authentication.getChildren('mechanism').map((m) => m.getText()), features.getChild('mechanisms')!.getChildren('mechanism').map((m) => m.getText()), 'the same mechanisms');
    const inline = authentication.getChild('inline')!;
    t.ok(inline.getChild('sm', 'urn:xmpp:sm:3'), 'XEP-0198 resumption inline');
    t.same(inline.getChild('bind', 'urn:xmpp:bind:0')!.getChild('inline')!.getChildren('feature').map((f) => f.attrs.var), ['urn:xmpp:sm:3', 'urn:xmpp:carbons:2', 'urn:xmpp:csi:0']);
    t.same(inline.getChild('fast', 'urn:xmpp:fast:0')!.getChildren('mechanism').map((m) => m.getText()), ['HT-SHA-256-EXPR', 'HT-SHA-256-ENDP', 'HT-SHA-256-NONE'], 'tls-unique is not offered on TLS 1.3');
  });

  let token = '';
  await t.test('Bind2 with inline carbons, CSI and SM; a token for a channel-bound mechanism', async (t) => {
    const conn = await open();
    conn.write(`<authenticate xmlns='${SASL2}' mechanism='PLAIN'><initial-response>${plain}</initial-response>`
      + `<user-agent id='${agent}'><software>raw</software><device>test</device></user-agent>`
      + `<bind xmlns='urn:xmpp:bind:0'><tag>raw</tag><enable xmlns='urn:xmpp:carbons:2'/><inactive xmlns='urn:xmpp:csi:0'/><enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>`
      + `<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-EXPR'/></authenticate>`);
    await conn.waitFor(/<success[\s\S]*<\/success>[\s\S]*<\/stream:features>/, WAIT_MS);
    const success = last(conn, 'success');
    const jid = success.getChildText('authorization-identifier')!;
    t.match(jid, /^alice@localhost\/raw\//, 'a full JID: a resource was bound');
    const bound = success.getChild('bound', 'urn:xmpp:bind:0')!;
    t.ok(bound.getChild('enabled', 'urn:xmpp:sm:3')?.attrs.id, 'XEP-0198 enabled inline, with a resumption id');
    const issued = success.getChild('token', 'urn:xmpp:fast:0')!;
    t.ok(issued, 'the token');
    token = issued.attrs.token;
    const features = last(conn, 'stream:features');
    t.notOk(features.getChild('bind'), 'no binding offered: the stream is bound');
    t.notOk(features.getChild('sm'), 'no <sm/>: it is enabled');
    t.ok(features.getChild('csi', 'urn:xmpp:csi:0'));
    const session = server.node.sessions.get(parseJID(jid))!;
    t.equal(session.carbons, true, 'carbons enabled inline');
    t.equal((session.sink as unknown as { inactive: boolean }).inactive, true, 'the session starts inactive');
    t.same((await tokens.find('alice@localhost', clientKey(agent), new Date())).map((f) => f.mechanism), ['HT-SHA-256-EXPR']);
    conn.write('</stream:stream>');
    await conn.waitClosed(WAIT_MS);
  });

  await t.test('HT-SHA-256-EXPR: the proof is bound to the TLS connection it is sent on', async (t) => {
    const first = await open();
    const second = await open();
    // A proof computed for the first connection, replayed on the second, fails.
    const replayed = b64(Buffer.concat([Buffer.from('alice\0'), htProof(token, 'Initiator', exporter(first))]));
    second.write(`<authenticate xmlns='${SASL2}' mechanism='HT-SHA-256-EXPR'><initial-response>${replayed}</initial-response><user-agent id='${agent}'/><fast xmlns='urn:xmpp:fast:0'/></authenticate>`);
    await second.waitFor(/<\/failure>/, WAIT_MS);
    t.ok(last(second, 'failure').getChild('credentials-expired', 'urn:ietf:params:xml:ns:xmpp-sasl'), 'refused as a token that does not work');
    // On its own connection the same token works, and the server proves it knows the token too.
    first.write(`<authenticate xmlns='${SASL2}' mechanism='HT-SHA-256-EXPR'><initial-response>${replayed}</initial-response><user-agent id='${agent}'/><fast xmlns='urn:xmpp:fast:0' invalidate='true'/></authenticate>`);
    await first.waitFor(/<\/success>/, WAIT_MS);
    const success = last(first, 'success');
    t.equal(success.getChildText('additional-data'), b64(htProof(token, 'Responder', exporter(first))), 'the server\'s HT message');
    t.equal(success.getChildText('authorization-identifier'), 'alice@localhost', 'no Bind2: a bare JID');
    await first.waitFor(/<\/stream:features>[\s\S]*<\/stream:features>/, WAIT_MS);
    t.ok(last(first, 'stream:features').getChild('bind', 'urn:ietf:params:xml:ns:xmpp-bind'), 'RFC 6120 binding follows');
    first.write(`<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>legacy</resource></bind></iq>`);
    await first.waitFor(/alice@localhost\/legacy/, WAIT_MS);
    t.same(await tokens.find('alice@localhost', clientKey(agent), new Date()), [], 'invalidate=\'true\': the token is revoked');
  });

  await t.test('a failed inline resumption still binds, and says so before <bound/>', async (t) => {
    const conn = await open();
    conn.write(`<authenticate xmlns='${SASL2}' mechanism='PLAIN'><initial-response>${plain}</initial-response>`
      + `<resume xmlns='urn:xmpp:sm:3' previd='no-such-session' h='0'/><bind xmlns='urn:xmpp:bind:0'><tag>after-failure</tag></bind></authenticate>`);
    await conn.waitFor(/<\/success>/, WAIT_MS);
    const success = last(conn, 'success');
    const names = success.children.filter((c): c is Element => typeof c !== 'string').map((c) => c.name);
    t.same(names, ['authorization-identifier', 'failed', 'bound']);
    t.ok(success.getChild('failed', 'urn:xmpp:sm:3')!.getChild('item-not-found'));
    t.match(success.getChildText('authorization-identifier'), /^alice@localhost\/after-failure\//);
  });

  await t.test('no token without a user-agent id, nor for a mechanism not offered', async (t) => {
    for (const [extra, why] of [
      [`<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>`, 'without a user-agent id'],
      [`<user-agent id='${crypto.randomUUID()}'/><request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-512-NONE'/>`, 'for an unknown mechanism'],
    ]) {
      const conn = await open();
      conn.write(`<authenticate xmlns='${SASL2}' mechanism='PLAIN'><initial-response>${plain}</initial-response>${extra}</authenticate>`);
      await conn.waitFor(/<\/success>/, WAIT_MS);
      t.notOk(last(conn, 'success').getChild('token'), why);
    }
  });

  await t.test('bad SASL2 input: an unknown mechanism, bad base64 and an abort each get a <failure/>', async (t) => {
    const conn = await open();
    conn.write(`<authenticate xmlns='${SASL2}' mechanism='X-UNKNOWN'><initial-response>AA==</initial-response></authenticate>`);
    await conn.waitFor(/invalid-mechanism/, WAIT_MS);
    conn.write(`<authenticate xmlns='${SASL2}' mechanism='SCRAM-SHA-1'><initial-response>***</initial-response></authenticate>`);
    await conn.waitFor(/incorrect-encoding/, WAIT_MS);
    conn.write(`<authenticate xmlns='${SASL2}' mechanism='SCRAM-SHA-1'/>`);
    await conn.waitFor(/<challenge xmlns=["']urn:xmpp:sasl:2["'](\/>|><\/challenge>)/, WAIT_MS);
    t.pass('no initial response: an empty challenge');
    conn.write(`<abort xmlns='${SASL2}'/>`);
    await conn.waitFor(/<aborted/, WAIT_MS);
    t.ok(last(conn, 'failure').getChild('aborted', 'urn:ietf:params:xml:ns:xmpp-sasl'), 'RFC 6120 conditions, in their namespace');
    t.notOk(conn.closed, 'the stream stays open (three failures close it)');
  });
});
