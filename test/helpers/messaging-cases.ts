import path from 'node:path';
import { eventually, startCluster } from './cluster';
import { forEachDatabase, type DatabaseKind } from './databases';
import { collect, nextStanza, sleep, xml } from './server';

/**
 * The cross-node messaging cases, on three nodes, for one strategy on the database `kind`; each
 * strategy has its own test file (messaging-*.test.ts) and database, so that the three strategies
 * cover the three databases and each file stays well inside tap's per-file timeout.
 */
export function messagingCases(strategy: string, kind: DatabaseKind): void {
  forEachDatabase(`three nodes, strategy ${path.basename(strategy)}`, async (t, dbUri) => {
    const cluster = await startCluster(t, { nodes: 3, dbUri, strategy });
    for (const user of ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gina']) await cluster.addUser(user);

    await t.test('messages to full JIDs cross nodes both ways, with the sender stamped', async (t) => {
      const alice = await cluster.login(0, 'alice', { resource: 'a' });
      const bob = await cluster.login(1, 'bob', { resource: 'b' });
      const toBob = nextStanza(bob, (s) => s.is('message'));
      await alice.send(xml('message', { to: 'bob@localhost/b', type: 'chat' }, xml('body', {}, 'hello from node 1')));
      const got = await toBob;
      t.equal(got.getChildText('body'), 'hello from node 1');
      t.equal(got.attrs.from, 'alice@localhost/a');
      const toAlice = nextStanza(alice, (s) => s.is('message'));
      await bob.send(xml('message', { to: 'alice@localhost/a', type: 'chat' }, xml('body', {}, 'hello from node 2')));
      t.equal((await toAlice).getChildText('body'), 'hello from node 2');
      await Promise.all([alice.stop(), bob.stop()]);
    });

    await t.test('a message to a bare JID reaches resources on two other nodes', async (t) => {
      const carolB = await cluster.login(1, 'carol', { resource: 'b' });
      const carolC = await cluster.login(2, 'carol', { resource: 'c' });
      const alice = await cluster.login(0, 'alice');
      const onB = nextStanza(carolB, (s) => s.is('message'));
      const onC = nextStanza(carolC, (s) => s.is('message'));
      await alice.send(xml('message', { to: 'carol@localhost', type: 'chat' }, xml('body', {}, 'to every carol')));
      t.equal((await onB).getChildText('body'), 'to every carol');
      t.equal((await onC).getChildText('body'), 'to every carol');
      t.equal(await cluster.storage.offline.count('carol@localhost'), 0, 'nothing stored offline');
      await Promise.all([carolB.stop(), carolC.stop(), alice.stop()]);
    });

    await t.test('a user online nowhere gets the message stored offline exactly once', async (t) => {
      const alice = await cluster.login(0, 'alice');
      await alice.send(xml('message', { to: 'dave@localhost', type: 'chat' }, xml('body', {}, 'while you were away')));
      await eventually('the message is stored', async () => (await cluster.storage.offline.count('dave@localhost')) > 0);
      await sleep(500);
      t.equal(await cluster.storage.offline.count('dave@localhost'), 1, 'one row, not one per node');
      const dave = await cluster.login(2, 'dave', { presence: false });
      const got = nextStanza(dave, (s) => s.is('message'));
      await dave.send(xml('presence'));
      const message = await got;
      t.equal(message.getChildText('body'), 'while you were away');
      t.ok(message.getChild('delay', 'urn:xmpp:delay'), 'with a delay stamp');
      await eventually('the queue is empty', async () => (await cluster.storage.offline.count('dave@localhost')) === 0);
      await Promise.all([alice.stop(), dave.stop()]);
    });

    await t.test('subscription and presence work across nodes, with roster pushes to every resource', async (t) => {
      const erin = await cluster.login(0, 'erin', { resource: 'desk' });
      const erinPhone = await cluster.login(2, 'erin', { resource: 'phone' });
      await erinPhone.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:roster' })));
      const frank = await cluster.login(1, 'frank', { resource: 'f' });
      const request = nextStanza(frank, (s) => s.is('presence') && s.attrs.type === 'subscribe');
      const pushToPhone = nextStanza(erinPhone, (s) => s.is('iq') && s.attrs.type === 'set' && s.getChild('query', 'jabber:iq:roster')?.getChild('item')?.attrs.ask === 'subscribe');
      await erin.send(xml('presence', { to: 'frank@localhost', type: 'subscribe' }));
      t.equal((await request).attrs.from, 'erin@localhost', 'frank on node 2 sees the request');
      await pushToPhone;
      t.pass('erin\'s resource on node 3 got the roster push');

      const subscribed = nextStanza(erin, (s) => s.is('presence') && s.attrs.type === 'subscribed');
      const frankPresence = nextStanza(erin, (s) => s.is('presence') && s.attrs.from === 'frank@localhost/f' && !s.attrs.type);
      await frank.send(xml('presence', { to: 'erin@localhost', type: 'subscribed' }));
      await subscribed;
      t.pass('erin gets subscribed');
      await frankPresence;
      t.pass('and frank\'s presence from another node');
      const item = await cluster.storage.roster.getItem('erin@localhost', 'frank@localhost');
      t.equal(item?.subscription, 'to');

      const away = nextStanza(erinPhone, (s) => s.is('presence') && s.attrs.from === 'frank@localhost/f' && s.getChildText('show') === 'away');
      await frank.send(xml('presence', {}, xml('show', {}, 'away')));
      await away;
      t.pass('a presence change reaches the subscriber on a third node');
      const gone = nextStanza(erin, (s) => s.is('presence') && s.attrs.from === 'frank@localhost/f' && s.attrs.type === 'unavailable');
      await frank.stop();
      await gone;
      t.pass('frank logging out is seen across nodes');
      await Promise.all([erin.stop(), erinPhone.stop()]);
    });

    await t.test('the same full JID logging in on another node ends the older session with <conflict/>', async (t) => {
      const first = await cluster.login(0, 'gina', { resource: 'same' });
      const conflict = new Promise<string>((resolve) => first.on('error', (err: Error & { condition?: string }) => resolve(err.condition ?? err.message)));
      const second = await cluster.login(1, 'gina', { resource: 'same' });
      t.equal(await conflict, 'conflict');
      const alice = await cluster.login(2, 'alice');
      const got = nextStanza(second, (s) => s.is('message'));
      await alice.send(xml('message', { to: 'gina@localhost/same', type: 'chat' }, xml('body', {}, 'which one?')));
      t.equal((await got).getChildText('body'), 'which one?', 'the newer session gets the traffic');
      await Promise.all([second.stop(), alice.stop()]);
    });

    await t.test('message carbons reach the user\'s resources on other nodes, sent and received', async (t) => {
      const carbonsForwarded = async () => {
        let sum = 0;
        for (const index of [0, 1, 2]) sum += (await cluster.status(index)).cluster.forwarded.carbons ?? 0;
        return sum;
      };
      t.equal(await carbonsForwarded(), 0, 'until a resource enables carbons, no node sends carbons to another (earlier tests sent messages between resources)');
      const desk = await cluster.login(0, 'frank', { resource: 'desk' });
      const phone = await cluster.login(2, 'frank', { resource: 'phone' });
      for (const client of [desk, phone]) await client.iqCaller.request(xml('iq', { type: 'set' }, xml('enable', { xmlns: 'urn:xmpp:carbons:2' })));
      const bob = await cluster.login(1, 'bob', { resource: 'carbon' });
      const received = nextStanza(phone, (s) => s.is('message') && Boolean(s.getChild('received', 'urn:xmpp:carbons:2')));
      await bob.send(xml('message', { to: 'frank@localhost/desk', type: 'chat' }, xml('body', {}, 'to the desk')));
      const copy = (await received).getChild('received')!.getChild('forwarded')!.getChild('message')!;
      t.equal(copy.getChildText('body'), 'to the desk', 'the phone on node 3 gets a received carbon of a message to the desk on node 1');
      const sent = nextStanza(phone, (s) => s.is('message') && Boolean(s.getChild('sent', 'urn:xmpp:carbons:2')));
      await desk.send(xml('message', { to: 'bob@localhost/carbon', type: 'chat' }, xml('body', {}, 'from the desk')));
      const sentCopy = (await sent).getChild('sent')!.getChild('forwarded')!.getChild('message')!;
      t.equal(sentCopy.getChildText('body'), 'from the desk', 'and a sent carbon of what the desk sends');
      t.ok((await carbonsForwarded()) >= 2, 'the carbons crossed the links');
      await Promise.all([desk.stop(), phone.stop(), bob.stop()]);
    });

    await t.test('IQ ping between users on different nodes, and results come back', async (t) => {
      const alice = await cluster.login(0, 'alice', { resource: 'pinger' });
      const bob = await cluster.login(2, 'bob', { resource: 'target' });
      const pong = await alice.iqCaller.request(xml('iq', { type: 'get', to: 'bob@localhost/target' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
      t.equal(pong.attrs.type, 'result');
      t.equal(pong.attrs.from, 'bob@localhost/target');
      await t.rejects(
        alice.iqCaller.request(xml('iq', { type: 'get', to: 'bob@localhost/nowhere' }, xml('ping', { xmlns: 'urn:xmpp:ping' }))),
        /service-unavailable/,
        'a resource bound nowhere answers service-unavailable',
      );
      const seen = collect(bob);
      await sleep(200);
      t.equal(seen.filter((s) => s.is('iq') && s.attrs.type === 'error').length, 0);
      await Promise.all([alice.stop(), bob.stop()]);
    });

    await t.test('sessions that ended leave nothing behind on any node (no ghost in a strategy\'s map)', async (t) => {
      // Every session above has logged out, most of them after being available.
      const leftovers = async () => {
        const statuses = await Promise.all([0, 1, 2].map((i) => cluster.status(i)));
        return statuses.map((s) => ({ sessions: s.sessions, cached: s.cluster.strategyStats.cachedResources ?? 0 }));
      };
      await eventually('no session and no cached resource on any node', async () => (await leftovers()).every((l) => l.sessions === 0 && l.cached === 0), 30_000)
        .catch(async (err) => {
          t.comment(JSON.stringify(await leftovers()));
          throw err;
        });
      t.pass('every node is empty');
    });
  }, [kind]);
}
