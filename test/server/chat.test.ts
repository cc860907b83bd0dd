import t from 'tap';
import { forEachDatabase } from '../helpers/databases';
import { collect, nextStanza, sleep, startTestServer, xml } from '../helpers/server';

forEachDatabase('two users chat over TCP', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri });
  await server.addUser('alice');
  await server.addUser('bob');

  await t.test('STARTTLS with SCRAM-SHA-1 logs in and binds the requested resource', async (t) => {
    const alice = await server.login('alice', { resource: 'laptop' });
    t.equal(alice.jid?.toString(), 'alice@localhost/laptop');
    await alice.stop();
  });

  await t.test('direct TLS with PLAIN logs in and gets a server-chosen resource', async (t) => {
    const alice = await server.login('alice', { tls: 'direct', mechanism: 'PLAIN' });
    t.match(alice.jid?.toString(), /^alice@localhost\/.+/);
    await alice.stop();
  });

  await t.test('a wrong password is refused', async (t) => {
    await t.rejects(server.login('alice', { password: 'wrong-password' }), /not-authorized/);
  });

  await t.test('messages flow both ways between full JIDs', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    const toBob = nextStanza(bob, (s) => s.is('message'));
    await alice.send(xml('message', { to: 'bob@localhost/b', type: 'chat', id: 'm1' }, xml('body', {}, 'hello bob')));
    const got = await toBob;
    t.equal(got.getChildText('body'), 'hello bob');
    t.equal(got.attrs.from, 'alice@localhost/a', 'from is stamped by the server');

    const toAlice = nextStanza(alice, (s) => s.is('message'));
    await bob.send(xml('message', { to: 'alice@localhost', type: 'chat' }, xml('body', {}, 'hi alice')));
    t.equal((await toAlice).getChildText('body'), 'hi alice');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('a message to a bare JID reaches every non-negative resource, not a negative one', async (t) => {
    const phone = await server.login('bob', { resource: 'phone', presence: false });
    const desk = await server.login('bob', { resource: 'desk', presence: false });
    const hidden = await server.login('bob', { resource: 'hidden', presence: false });
    await phone.send(xml('presence', {}, xml('priority', {}, '1')));
    await desk.send(xml('presence', {}, xml('priority', {}, '0')));
    await hidden.send(xml('presence', {}, xml('priority', {}, '-1')));
    const hiddenSeen = collect(hidden);
    await sleep(200);
    const alice = await server.login('alice');
    const gotPhone = nextStanza(phone, (s) => s.is('message'));
    const gotDesk = nextStanza(desk, (s) => s.is('message'));
    await alice.send(xml('message', { to: 'bob@localhost', type: 'chat' }, xml('body', {}, 'to all')));
    t.equal((await gotPhone).getChildText('body'), 'to all');
    t.equal((await gotDesk).getChildText('body'), 'to all');
    await sleep(200);
    t.equal(hiddenSeen.filter((s) => s.is('message')).length, 0, 'negative priority gets nothing');
    await Promise.all([phone.stop(), desk.stop(), hidden.stop(), alice.stop()]);
  });

  await t.test('a second login with the same full JID ends the first with <conflict/>', async (t) => {
    const first = await server.login('alice', { resource: 'same' });
    const closed = new Promise<string>((resolve) => {
      first.on('error', (err: Error & { condition?: string }) => resolve(err.condition ?? err.message));
    });
    const second = await server.login('alice', { resource: 'same' });
    t.equal(await closed, 'conflict');
    t.equal(second.jid?.toString(), 'alice@localhost/same');
    await second.stop();
  });

  await t.test('IQ ping to the server and between users', async (t) => {
    const alice = await server.login('alice', { resource: 'p' });
    const bob = await server.login('bob', { resource: 'p' });
    const pong = await alice.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    t.equal(pong.attrs.type, 'result');
    const fromBob = await alice.iqCaller.request(xml('iq', { type: 'get', to: 'bob@localhost/p' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    t.equal(fromBob.attrs.type, 'result', 'bob\'s client answered');
    t.equal(fromBob.attrs.from, 'bob@localhost/p');
    await t.rejects(
      alice.iqCaller.request(xml('iq', { type: 'get', to: 'bob@localhost/gone' }, xml('ping', { xmlns: 'urn:xmpp:ping' }))),
      /service-unavailable/,
    );
    await Promise.all([alice.stop(), bob.stop()]);
  });
});

t.test('unknown users', async (t) => {
  const server = await startTestServer(t);
  await server.addUser('alice');
  const alice = await server.login('alice');
  const error = nextStanza(alice, (s) => s.is('message') && s.attrs.type === 'error');
  await alice.send(xml('message', { to: 'nobody@localhost', type: 'chat', id: 'x' }, xml('body', {}, 'anyone?')));
  const reply = await error;
  t.ok(reply.getChild('error')?.getChild('service-unavailable'), 'a message to a missing account bounces with service-unavailable');
  t.equal(reply.attrs.from, 'nobody@localhost');
});
