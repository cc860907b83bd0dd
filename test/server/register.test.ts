import net from 'node:net';
import tls from 'node:tls';
import t from 'tap';
import type { TapTest } from '../helpers/databases';
import { forEachDatabase } from '../helpers/databases';
import { nextStanza, RawConnection, STREAM_OPEN, startTestServer, xml, type TestServer } from '../helpers/server';
import { subscribe } from '../helpers/subscriptions';

const REGISTER = 'jabber:iq:register';
const REGISTER_FEATURE = /<register xmlns=["']http:\/\/jabber\.org\/features\/iq-register["']\/>/;
const FEATURES_END = /<\/stream:features>/;

/** A raw direct-TLS connection with the stream opened and the features read. */
async function openTls(t: TapTest, server: TestServer): Promise<{ conn: RawConnection; features: string }> {
  const conn = await RawConnection.connect(server.tlsPort, true);
  t.teardown(() => conn.destroy());
  conn.write(STREAM_OPEN);
  const features = await conn.waitFor(FEATURES_END);
  return { conn, features };
}

/** Sends a registration IQ over a raw connection and returns the reply's text. */
async function rawIq(conn: RawConnection, id: string, type: 'get' | 'set', inner = ''): Promise<string> {
  const from = conn.text.length;
  conn.write(`<iq type='${type}' id='${id}'><query xmlns='${REGISTER}'>${inner}</query></iq>`);
  // The whole reply: a self-closing <iq/> or one with content up to </iq>.
  const reply = new RegExp(`<iq[^>]*\\sid=["']${id}["'][^>]*?(/>|>[\\s\\S]*?</iq>)`);
  await conn.waitFor(reply);
  return reply.exec(conn.text.slice(from))![0];
}

const escapeXml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
const registration = (username: string, password: string) =>
  `<username>${escapeXml(username)}</username><password>${escapeXml(password)}</password>`;

/** Reads from a plain socket until `pattern` matches what arrived. */
function readUntil(socket: net.Socket | tls.TLSSocket, pattern: RegExp, ms = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => done(new Error(`timed out waiting for ${pattern}; got: ${text}`)), ms);
    const onData = (data: Buffer) => {
      text += data.toString('utf8');
      if (pattern.test(text)) done();
    };
    const done = (err?: Error) => {
      clearTimeout(timer);
      socket.off('data', onData);
      if (err) reject(err);
      else resolve(text);
    };
    socket.on('data', onData);
  });
}

forEachDatabase('in-band registration (XEP-0077)', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri, args: ['--registration=true'] });
  await server.addUser('taken');

  await t.test('the register feature is offered only once the stream is encrypted', async (t) => {
    const socket = net.connect({ port: server.port, host: '127.0.0.1' });
    t.teardown(() => socket.destroy());
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(STREAM_OPEN);
    const before = await readUntil(socket, FEATURES_END);
    t.match(before, /<starttls/, 'STARTTLS is offered');
    t.notMatch(before, REGISTER_FEATURE, 'no register feature before TLS');
    socket.write("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    await readUntil(socket, /<proceed/);
    const secure = tls.connect({ socket, servername: 'localhost', rejectUnauthorized: false });
    secure.on('error', () => undefined);
    await new Promise<void>((resolve) => secure.once('secureConnect', () => resolve()));
    secure.write(STREAM_OPEN);
    t.match(await readUntil(secure, FEATURES_END), REGISTER_FEATURE, 'after STARTTLS the register feature is there');
    secure.destroy();

    const { features } = await openTls(t, server);
    t.match(features, REGISTER_FEATURE, 'and over direct TLS');
  });

  await t.test('a registration IQ before STARTTLS closes the stream', async (t) => {
    const conn = await RawConnection.connect(server.port);
    t.teardown(() => conn.destroy());
    conn.write(STREAM_OPEN);
    await conn.waitFor(FEATURES_END);
    conn.write(`<iq type='set' id='early'><query xmlns='${REGISTER}'>${registration('early', 'long-enough-1')}</query></iq>`);
    await conn.waitClosed();
    t.match(conn.text, /<stream:error>/, 'a stream error');
    t.notMatch(conn.text, /id=["']early["']/, 'no IQ answer');
    t.notOk(await server.node.storage.users.get('early@localhost'), 'no account created');
  });

  await t.test('the registration form asks for username and password', async (t) => {
    const { conn } = await openTls(t, server);
    const reply = await rawIq(conn, 'form1', 'get');
    t.match(reply, /type=["']result["']/);
    t.match(reply, /<instructions>[^<]+<\/instructions>/, 'with instructions');
    t.match(reply, /<username\/>/);
    t.match(reply, /<password\/>/);
    t.notMatch(reply, /<registered\/>/, 'an unauthenticated entity is not registered');
  });

  await t.test('an account created over a raw TLS connection can log in with a real client', async (t) => {
    const { conn } = await openTls(t, server);
    const reply = await rawIq(conn, 'reg1', 'set', registration('Newbie', 'nouveau-mot-de-passe'));
    t.match(reply, /type=["']result["']/, 'registered');
    t.ok(await server.node.storage.users.get('newbie@localhost'), 'stored under the prepared (lowercase) JID');
    const client = await server.login('newbie', { password: 'nouveau-mot-de-passe' });
    t.equal(client.jid?.bare().toString(), 'newbie@localhost');
    await client.stop();
  });

  await t.test('registration refusals', async (t) => {
    const { conn } = await openTls(t, server);
    const conflict = await rawIq(conn, 'c1', 'set', registration('taken', 'long-enough-pw'));
    t.match(conflict, /type=["']error["']/);
    t.match(conflict, /<conflict xmlns=["']urn:ietf:params:xml:ns:xmpp-stanzas["']/, 'a taken username is conflict');
    t.match(await rawIq(conn, 'c2', 'set', registration('TAKEN', 'long-enough-pw')), /<conflict /, 'also in another case');

    t.match(await rawIq(conn, 'p1', 'set', registration('shorty', 'short')), /<not-acceptable /, 'a short password is not-acceptable');
    t.match(await rawIq(conn, 'p2', 'set', registration('shorty', '')), /<not-acceptable /, 'an empty password is not-acceptable');
    t.match(await rawIq(conn, 'p3', 'set', '<username>shorty</username>'), /<not-acceptable /, 'a missing password is not-acceptable');

    for (const [id, bad] of [
      ['u1', 'with space'],
      ['u2', 'at@sign'],
      ['u3', 'slash/name'],
      ['u4', `${'x'.repeat(600)}`],
    ]) {
      t.match(await rawIq(conn, id, 'set', registration(bad, 'long-enough-pw')), /<not-acceptable /, `username "${bad.slice(0, 20)}" is not-acceptable`);
    }
    t.notOk(conn.closed, 'refusals leave the stream open');
    t.same(
      (await server.node.storage.users.list('localhost')).filter((jid) => !['taken@localhost', 'newbie@localhost'].includes(jid)),
      [],
      'no account was created by any of them',
    );
  });

  await t.test('after login: the registration is shown, the password changes', async (t) => {
    await server.addUser('changer', 'first-password');
    const client = await server.login('changer', { password: 'first-password' });
    const info = await client.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('query', { xmlns: REGISTER })));
    const query = info.getChild('query', REGISTER)!;
    t.ok(query.getChild('registered'), '<registered/>');
    t.equal(query.getChildText('username'), 'changer');

    const refused = await client.iqCaller
      .request(xml('iq', { type: 'set', to: 'localhost' }, xml('query', { xmlns: REGISTER }, xml('username', {}, 'changer'), xml('password', {}, 'tiny'))))
      .then(
        () => undefined,
        (err: { condition?: string; element?: { parent?: { toString(): string } } }) => err,
      );
    t.equal(refused?.condition, 'not-acceptable', 'a short new password is refused');
    t.notMatch(refused?.element?.parent?.toString() ?? '', /tiny/, 'the error does not echo the password (XEP-0077 §3.3)');

    // XEP-0077 §3.3 example: addressed to the server.
    const changed = await client.iqCaller.request(
      xml('iq', { type: 'set', to: 'localhost' }, xml('query', { xmlns: REGISTER }, xml('username', {}, 'changer'), xml('password', {}, 'second-password'))),
    );
    t.equal(changed.attrs.type, 'result');
    await t.rejects(server.login('changer', { password: 'first-password' }), /not-authorized/, 'the old password fails');
    const again = await server.login('changer', { password: 'second-password' });
    t.pass('the new password works');

    // Without 'to' (the account itself) works the same.
    await again.iqCaller.request(xml('iq', { type: 'set' }, xml('query', { xmlns: REGISTER }, xml('username', {}, 'changer'), xml('password', {}, 'third-password'))));
    await t.rejects(server.login('changer', { password: 'second-password' }), /not-authorized/);
    await (await server.login('changer', { password: 'third-password' })).stop();

    await t.rejects(
      again.iqCaller.request(xml('iq', { type: 'set', to: 'taken@localhost' }, xml('query', { xmlns: REGISTER }, xml('password', {}, 'hijacked-password')))),
      { name: 'StanzaError', condition: 'forbidden' },
      "nobody changes another user's password",
    );
    await (await server.login('taken', { password: undefined })).stop();
    await Promise.all([client.stop(), again.stop()]);
  });

  await t.test('after login: <remove/> deletes the account, ends its sessions and its subscriptions', async (t) => {
    await server.addUser('leaver', 'leaver-password');
    await server.addUser('friend');
    const leaver = await server.login('leaver', { password: 'leaver-password', resource: 'main' });
    const other = await server.login('leaver', { password: 'leaver-password', resource: 'other' });
    const friend = await server.login('friend');
    await subscribe(friend, leaver);

    const streamErrors = [leaver, other].map(
      (c) => new Promise<string>((resolve) => c.on('error', (err: Error & { condition?: string }) => resolve(err.condition ?? err.message))),
    );
    const unavailable = nextStanza(friend, (s) => s.is('presence') && s.attrs.type === 'unavailable' && s.attrs.from === 'leaver@localhost/main');
    const unsubscribed = nextStanza(friend, (s) => s.is('presence') && s.attrs.type === 'unsubscribed' && s.attrs.from === 'leaver@localhost');

    const result = await leaver.iqCaller.request(xml('iq', { type: 'set' }, xml('query', { xmlns: REGISTER }, xml('remove'))));
    t.equal(result.attrs.type, 'result', 'the remove is confirmed');
    t.same(await Promise.all(streamErrors), ['not-authorized', 'not-authorized'], 'every session ends with a not-authorized stream error');
    await Promise.all([unavailable, unsubscribed]);
    t.pass("the friend sees leaver go offline and lose the subscription");

    t.notOk(await server.node.storage.users.get('leaver@localhost'), 'the account is gone');
    await t.rejects(server.login('leaver', { password: 'leaver-password' }), /not-authorized/, 'logging in fails');
    await friend.stop();
  });
});

t.test('with registration off', async (t) => {
  const server = await startTestServer(t);

  await t.test('there is no register feature', async (t) => {
    const { features } = await openTls(t, server);
    t.match(features, /<mechanisms/, 'the features arrived');
    t.notMatch(features, REGISTER_FEATURE);
  });

  await t.test('a registration IQ before authentication gets a not-authorized stream error', async (t) => {
    const { conn } = await openTls(t, server);
    conn.write(`<iq type='set' id='r1'><query xmlns='${REGISTER}'>${registration('sneaky', 'long-enough-pw')}</query></iq>`);
    await conn.waitClosed();
    t.match(conn.text, /<stream:error><not-authorized xmlns=["']urn:ietf:params:xml:ns:xmpp-streams["']/);
    t.notOk(await server.node.storage.users.get('sneaky@localhost'), 'no account created');
  });

  await t.test('after login the register namespace is not served', async (t) => {
    await server.addUser('alice');
    const alice = await server.login('alice');
    await t.rejects(
      alice.iqCaller.request(xml('iq', { type: 'set' }, xml('query', { xmlns: REGISTER }, xml('remove')))),
      { name: 'StanzaError', condition: 'service-unavailable' },
    );
    t.ok(await server.node.storage.users.get('alice@localhost'), 'alice is still there');
  });
});
