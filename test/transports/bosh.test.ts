import { forEachDatabase } from '../helpers/databases';
import { presenceFrom, seedMutual, waitUntil } from '../helpers/im';
import { nextStanza, startTestServer, xml } from '../helpers/server';
import { nextEvent, stanzaLogin, stanzaStop } from '../helpers/stanza';

forEachDatabase('StanzaJS over BOSH', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri });
  await server.addUser('alice');
  await server.addUser('bob');

  await t.test('logs in with SCRAM, restarts the stream and binds the requested resource', async (t) => {
    const alice = await stanzaLogin(t, server, 'alice', 'bosh', { resource: 'bosh' });
    t.equal(alice.jid, 'alice@localhost/bosh');
    await stanzaStop(alice);
  });

  await t.test('a wrong password is refused over BOSH', async (t) => {
    await t.rejects(stanzaLogin(t, server, 'alice', 'bosh', { password: 'wrong-password' }), /not-authorized/);
  });

  await t.test('messages flow both ways with a TCP client', async (t) => {
    const alice = await stanzaLogin(t, server, 'alice', 'bosh', { resource: 'web' });
    const bob = await server.login('bob', { resource: 'tcp' });
    const toBob = nextStanza(bob, (s) => s.is('message'));
    alice.sendMessage({ to: 'bob@localhost/tcp', type: 'chat', body: 'from BOSH' });
    const got = await toBob;
    t.equal(got.getChildText('body'), 'from BOSH');
    t.equal(got.attrs.from, 'alice@localhost/web', 'from is stamped by the server');
    // The client is long-polling now: the message must come back on its held request.
    const toAlice = nextEvent(alice, 'message', (m) => m.body === 'from TCP');
    await bob.send(xml('message', { to: 'alice@localhost', type: 'chat' }, xml('body', {}, 'from TCP')));
    t.equal((await toAlice).from, 'bob@localhost/tcp');
    await Promise.all([stanzaStop(alice), bob.stop()]);
  });

  await t.test('presence goes both ways with a TCP contact; terminating the BOSH session sends unavailable', async (t) => {
    await seedMutual(server, 'alice', 'bob');
    const bob = await server.login('bob', { resource: 'tcp' });
    const online = nextStanza(bob, presenceFrom('alice@localhost/web'));
    const alice = await stanzaLogin(t, server, 'alice', 'bosh', { resource: 'web', presence: false });
    const bobSeen = nextEvent(alice, 'available', (p) => p.from === 'bob@localhost/tcp');
    alice.sendPresence({ status: 'on BOSH' });
    t.equal((await online).getChildText('status'), 'on BOSH');
    t.ok(await bobSeen, 'the BOSH client learns the TCP contact is online');
    const away = nextEvent(alice, 'presence', (p) => p.from === 'bob@localhost/tcp' && p.show === 'away');
    await bob.send(xml('presence', {}, xml('show', {}, 'away')));
    t.ok(await away, 'a presence change reaches the BOSH client');
    const offline = nextStanza(bob, presenceFrom('alice@localhost/web', 'unavailable'));
    await stanzaStop(alice); // StanzaJS sends type='terminate'
    t.ok(await offline, 'the contact sees unavailable presence');
    await bob.stop();
  });

  await t.test('roster: add an item and read it back', async (t) => {
    const alice = await stanzaLogin(t, server, 'alice', 'bosh');
    await alice.updateRosterItem({ jid: 'erin@localhost', name: 'Erin', groups: ['Work'] } as Parameters<typeof alice.updateRosterItem>[0]);
    const roster = await alice.getRoster();
    const erin = roster.items.find((i) => i.jid === 'erin@localhost');
    t.equal(erin?.name, 'Erin');
    t.same(erin?.groups, ['Work']);
    await stanzaStop(alice);
  });

  await t.test('offline messages arrive after login', async (t) => {
    await server.addUser('frank');
    const bob = await server.login('bob', { resource: 'tcp' });
    await bob.send(xml('message', { to: 'frank@localhost', type: 'chat' }, xml('body', {}, 'stored for frank')));
    await waitUntil(async () => (await server.node.storage.offline.count('frank@localhost')) === 1, 5000, 'the offline message');
    const frank = await stanzaLogin(t, server, 'frank', 'bosh', { presence: false });
    const delivered = nextEvent(frank, 'message', (m) => m.body === 'stored for frank');
    frank.sendPresence();
    const message = await delivered;
    t.ok(message.delay, 'stamped with XEP-0203 delay');
    await Promise.all([stanzaStop(frank), bob.stop()]);
  });

  await t.test('a BOSH and a WebSocket resource of the same user both get a message to the bare JID', async (t) => {
    const viaBosh = await stanzaLogin(t, server, 'alice', 'bosh', { resource: 'b' });
    const viaWs = await stanzaLogin(t, server, 'alice', 'websocket', { resource: 'w' });
    const bob = await server.login('bob');
    const gotBosh = nextEvent(viaBosh, 'message', (m) => m.body === 'to both');
    const gotWs = nextEvent(viaWs, 'message', (m) => m.body === 'to both');
    await bob.send(xml('message', { to: 'alice@localhost', type: 'chat' }, xml('body', {}, 'to both')));
    t.ok(await gotBosh);
    t.ok(await gotWs);
    await Promise.all([stanzaStop(viaBosh), stanzaStop(viaWs), bob.stop()]);
  });
});
