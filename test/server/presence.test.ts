import { forEachDatabase } from '../helpers/databases';
import { dropConnection, item, nextPush, presenceFrom, presencesFrom, rosterGet, rosterItems, rosterSet, seedItem, seedMutual, waitUntil } from '../helpers/im';
import { collect, nextStanza, sleep, startTestServer, xml } from '../helpers/server';

/** How long to wait before asserting that something did NOT arrive. */
const QUIET_MS = 250;

forEachDatabase('presence and subscriptions (RFC 6121 §3, §4)', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri });
  const users = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gina', 'henry', 'ivan', 'judy', 'kate', 'liam', 'mona', 'nick', 'olga', 'pete', 'quin', 'rose'];
  for (const user of users) await server.addUser(user);

  await t.test('the full subscription handshake ends in a mutual subscription', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await Promise.all([rosterGet(alice), rosterGet(bob)]);

    // alice asks: her roster shows a pending request, bob's available resource sees it.
    const aliceAsks = nextPush(alice, 'bob@localhost', (i) => i.attrs.ask === 'subscribe');
    const bobSees = nextStanza(bob, presenceFrom('alice@localhost', 'subscribe'));
    await alice.send(xml('presence', { to: 'bob@localhost', type: 'subscribe', id: 's1' }));
    const asked = await aliceAsks;
    t.equal(asked.attrs.subscription, 'none', "alice's item: none + pending out");
    const request = await bobSees;
    t.equal(request.attrs.to, 'bob@localhost', 'the request is addressed to the bare JID');
    t.equal(request.attrs.id, 's1', 'and keeps its id');

    // bob approves: both rosters move, alice is told and gets bob's presence.
    const bobFrom = nextPush(bob, 'alice@localhost', (i) => i.attrs.subscription === 'from');
    const aliceTo = nextPush(alice, 'bob@localhost', (i) => i.attrs.subscription === 'to');
    const aliceToldSubscribed = nextStanza(alice, presenceFrom('bob@localhost', 'subscribed'));
    const bobPresence = nextStanza(alice, presenceFrom('bob@localhost/b'));
    await bob.send(xml('presence', { to: 'alice@localhost', type: 'subscribed' }));
    await bobFrom;
    t.notOk((await aliceTo).attrs.ask, "alice's item: to, no longer pending");
    await aliceToldSubscribed;
    await bobPresence;
    t.pass("alice got 'subscribed' and bob's current presence");

    // bob asks back, alice approves: both end at 'both'.
    const aliceSeesRequest = nextStanza(alice, presenceFrom('bob@localhost', 'subscribe'));
    await bob.send(xml('presence', { to: 'alice@localhost', type: 'subscribe' }));
    await aliceSeesRequest;
    const aliceBoth = nextPush(alice, 'bob@localhost', (i) => i.attrs.subscription === 'both');
    const bobBoth = nextPush(bob, 'alice@localhost', (i) => i.attrs.subscription === 'both');
    const alicePresence = nextStanza(bob, presenceFrom('alice@localhost/a'));
    await alice.send(xml('presence', { to: 'bob@localhost', type: 'subscribed' }));
    await Promise.all([aliceBoth, bobBoth, alicePresence]);

    t.equal((await rosterItems(alice)).get('bob@localhost')?.attrs.subscription, 'both');
    t.equal((await rosterItems(bob)).get('alice@localhost')?.attrs.subscription, 'both');

    // Once subscribed, presence changes are broadcast to the subscriber.
    const away = nextStanza(bob, (s) => presenceFrom('alice@localhost/a')(s) && s.getChildText('show') === 'away');
    await alice.send(xml('presence', {}, xml('show', {}, 'away'), xml('status', {}, 'lunch')));
    t.equal((await away).getChildText('status'), 'lunch', 'the broadcast carries the status');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('presence goes to subscribers only, not to strangers', async (t) => {
    await seedMutual(server, 'carol', 'dave');
    const dave = await server.login('dave');
    const erin = await server.login('erin');
    const erinSeen = collect(erin);
    const seen = nextStanza(dave, (s) => s.is('presence') && s.attrs.from === 'carol@localhost/c' && s.attrs.type === undefined);
    const carol = await server.login('carol', { resource: 'c' });
    await seen;
    t.pass('the subscriber sees the initial presence');
    const gone = nextStanza(dave, presenceFrom('carol@localhost/c', 'unavailable'));
    await carol.send(xml('presence', { type: 'unavailable' }));
    await gone;
    t.pass('and the unavailable presence');
    await sleep(QUIET_MS);
    t.equal(presencesFrom(erinSeen, 'carol@localhost').length, 0, 'a non-subscriber sees nothing');
    await Promise.all([carol.stop(), dave.stop(), erin.stop()]);
  });

  await t.test('on login the server probes contacts: a contact logging in later sees who is online', async (t) => {
    await seedMutual(server, 'frank', 'gina');
    const frank = await server.login('frank', { resource: 'f', presence: false });
    const echo = nextStanza(frank, presenceFrom('frank@localhost/f'));
    await frank.send(xml('presence', {}, xml('status', {}, 'here since morning')));
    await echo; // the server has taken frank's initial presence

    const gina = await server.login('gina', { resource: 'g', presence: false });
    const probeAnswer = nextStanza(gina, presenceFrom('frank@localhost/f'));
    await gina.send(xml('presence'));
    const answer = await probeAnswer;
    t.equal(answer.getChildText('status'), 'here since morning', "gina got frank's last presence");
    t.equal(answer.attrs.to, 'gina@localhost/g', 'addressed to the full JID that came online');
    await Promise.all([frank.stop(), gina.stop()]);
  });

  await t.test('a probe answered with unsubscribed repairs a subscription the contact no longer grants', async (t) => {
    // henry believes he is subscribed to ivan; ivan's roster says otherwise (RFC 6121 §4.3.2).
    await seedItem(server, 'henry', 'ivan', 'to');
    const henry = await server.login('henry', { presence: false });
    await rosterGet(henry);
    const repaired = nextPush(henry, 'ivan@localhost', (i) => i.attrs.subscription === 'none');
    await henry.send(xml('presence'));
    await repaired;
    t.pass("henry's stale 'to' subscription was cancelled");
    await henry.stop();
  });

  await t.test('unavailable presence reaches subscribers on logout and when the connection drops', async (t) => {
    await seedMutual(server, 'judy', 'kate');
    const kate = await server.login('kate');

    const online = nextStanza(kate, presenceFrom('judy@localhost/clean'));
    const clean = await server.login('judy', { resource: 'clean' });
    await online;
    const loggedOut = nextStanza(kate, presenceFrom('judy@localhost/clean', 'unavailable'));
    await clean.stop();
    await loggedOut;
    t.pass('a clean logout');

    const online2 = nextStanza(kate, presenceFrom('judy@localhost/dropped'));
    const dropped = await server.login('judy', { resource: 'dropped', resumption: false });
    await online2;
    const lost = nextStanza(kate, presenceFrom('judy@localhost/dropped', 'unavailable'));
    dropConnection(dropped);
    await lost;
    t.pass('a dropped TCP connection');
    await kate.stop();
  });

  await t.test('directed presence reaches a non-contact, and so does the unavailable that follows', async (t) => {
    const liam = await server.login('liam', { resource: 'l' });
    const mona = await server.login('mona', { resource: 'm' });
    const nick = await server.login('nick');
    const nickSeen = collect(nick);

    const directed = nextStanza(mona, presenceFrom('liam@localhost/l'));
    await liam.send(xml('presence', { to: 'mona@localhost/m' }, xml('status', {}, 'just for you')));
    t.equal((await directed).getChildText('status'), 'just for you');

    const gone = nextStanza(mona, presenceFrom('liam@localhost/l', 'unavailable'));
    await liam.stop();
    await gone;
    t.pass('the directed recipient learns of the logout');

    // An explicit directed unavailable also reaches the recipient.
    const liam2 = await server.login('liam', { resource: 'l2' });
    const hello = nextStanza(mona, presenceFrom('liam@localhost/l2'));
    await liam2.send(xml('presence', { to: 'mona@localhost' }));
    await hello;
    const bye = nextStanza(mona, presenceFrom('liam@localhost/l2', 'unavailable'));
    await liam2.send(xml('presence', { to: 'mona@localhost', type: 'unavailable' }));
    await bye;
    t.pass('a directed unavailable');

    await sleep(QUIET_MS);
    t.equal(presencesFrom(nickSeen, 'liam@localhost').length, 0, 'nobody else saw liam');
    await Promise.all([liam2.stop(), mona.stop(), nick.stop()]);
  });

  await t.test('a subscription request to an offline user is delivered when the user logs in, until answered', async (t) => {
    const olga = await server.login('olga');
    await olga.send(xml('presence', { to: 'pete@localhost', type: 'subscribe' }));
    await waitUntil(async () => (await server.node.storage.roster.getPendingIn('pete@localhost')).length === 1, 5000, 'the stored request');

    const pete = await server.login('pete', { presence: false });
    const delivered = nextStanza(pete, presenceFrom('olga@localhost', 'subscribe'));
    await pete.send(xml('presence'));
    await delivered;
    t.pass('delivered on initial presence');

    const pete2 = await server.login('pete', { presence: false });
    const again = nextStanza(pete2, presenceFrom('olga@localhost', 'subscribe'));
    await pete2.send(xml('presence'));
    await again;
    t.pass('redelivered to the next resource while it is unanswered');

    const olgaTold = nextStanza(olga, presenceFrom('pete@localhost', 'subscribed'));
    await pete.send(xml('presence', { to: 'olga@localhost', type: 'subscribed' }));
    await olgaTold;

    const pete3 = await server.login('pete', { presence: false });
    const seen = collect(pete3);
    await pete3.send(xml('presence'));
    await sleep(QUIET_MS);
    t.equal(presencesFrom(seen, 'olga@localhost', 'subscribe').length, 0, 'an answered request is not shown again');
    await Promise.all([olga.stop(), pete.stop(), pete2.stop(), pete3.stop()]);
  });

  await t.test('denying a request and revoking a subscription', async (t) => {
    const quin = await server.login('quin', { resource: 'q' });
    const rose = await server.login('rose', { resource: 'r' });
    await Promise.all([rosterGet(quin), rosterGet(rose)]);

    // Deny: quin asks, rose answers unsubscribed.
    const asked = nextStanza(rose, presenceFrom('quin@localhost', 'subscribe'));
    await quin.send(xml('presence', { to: 'rose@localhost', type: 'subscribe' }));
    await asked;
    const denied = nextStanza(quin, presenceFrom('rose@localhost', 'unsubscribed'));
    const cleared = nextPush(quin, 'rose@localhost', (i) => i.attrs.subscription === 'none' && !i.attrs.ask);
    await rose.send(xml('presence', { to: 'quin@localhost', type: 'unsubscribed' }));
    await denied;
    await cleared;
    t.pass('the requester is told and its pending request is cleared');

    // Grant, then revoke: quin loses rose's presence.
    const askedAgain = nextStanza(rose, presenceFrom('quin@localhost', 'subscribe'));
    await quin.send(xml('presence', { to: 'rose@localhost', type: 'subscribe' }));
    await askedAgain;
    const subscribed = nextPush(quin, 'rose@localhost', (i) => i.attrs.subscription === 'to');
    const rosePresence = nextStanza(quin, presenceFrom('rose@localhost/r'));
    await rose.send(xml('presence', { to: 'quin@localhost', type: 'subscribed' }));
    await subscribed;
    await rosePresence;

    const quinSeen = collect(quin);
    const roseNone = nextPush(rose, 'quin@localhost', (i) => i.attrs.subscription === 'none');
    const quinNone = nextPush(quin, 'rose@localhost', (i) => i.attrs.subscription === 'none');
    const revoked = nextStanza(quin, presenceFrom('rose@localhost', 'unsubscribed'));
    await rose.send(xml('presence', { to: 'quin@localhost', type: 'unsubscribed' }));
    await Promise.all([roseNone, quinNone, revoked]);
    const unavailable = quinSeen.findIndex(presenceFrom('rose@localhost/r', 'unavailable'));
    const unsubscribed = quinSeen.findIndex(presenceFrom('rose@localhost', 'unsubscribed'));
    t.ok(unavailable >= 0, "quin got rose's unavailable presence");
    t.ok(unavailable < unsubscribed, 'before the unsubscribed (RFC 6121 §3.2.2)');

    const later = collect(quin);
    await rose.send(xml('presence', {}, xml('show', {}, 'dnd')));
    await sleep(QUIET_MS);
    t.equal(presencesFrom(later, 'rose@localhost').length, 0, 'no more presence after the revocation');
    await Promise.all([quin.stop(), rose.stop()]);
  });
});

forEachDatabase('pre-approval, unsubscribe and unknown contacts (RFC 6121 §3.3, §3.4)', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri });
  for (const user of ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gina', 'henry', 'ivan', 'judy']) await server.addUser(user);

  await t.test('a pre-approved contact is subscribed without asking the user', async (t) => {
    const alice = await server.login('alice', { resource: 'a' });
    const bob = await server.login('bob', { resource: 'b' });
    await Promise.all([rosterGet(alice), rosterGet(bob)]);
    const aliceSeen = collect(alice);
    const bobSeen = collect(bob);

    const approved = nextPush(alice, 'bob@localhost', (i) => i.attrs.approved === 'true');
    await alice.send(xml('presence', { to: 'bob@localhost', type: 'subscribed' }));
    t.equal((await approved).attrs.subscription, 'none', 'the item is pre-approved, subscription none');
    await sleep(QUIET_MS);
    t.equal(presencesFrom(bobSeen, 'alice@localhost', 'subscribed').length, 0, 'nothing is sent to bob yet');

    const granted = nextStanza(bob, presenceFrom('alice@localhost', 'subscribed'));
    const presence = nextStanza(bob, presenceFrom('alice@localhost/a'));
    const aliceFrom = nextPush(alice, 'bob@localhost', (i) => i.attrs.subscription === 'from');
    await bob.send(xml('presence', { to: 'alice@localhost', type: 'subscribe' }));
    await presence;
    t.notOk((await aliceFrom).attrs.approved, 'the pre-approval is used up');
    await sleep(QUIET_MS);
    t.equal(presencesFrom(aliceSeen, 'bob@localhost', 'subscribe').length, 0, 'alice was not asked');
    t.equal((await rosterItems(bob)).get('alice@localhost')?.attrs.subscription, 'to');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('a pre-approval can be cancelled with unsubscribed, which is not routed', async (t) => {
    const carol = await server.login('carol');
    const dave = await server.login('dave');
    await rosterGet(carol);
    const daveSeen = collect(dave);
    const approved = nextPush(carol, 'dave@localhost', (i) => i.attrs.approved === 'true');
    await carol.send(xml('presence', { to: 'dave@localhost', type: 'subscribed' }));
    await approved;
    const cancelled = nextPush(carol, 'dave@localhost', (i) => !i.attrs.approved);
    await carol.send(xml('presence', { to: 'dave@localhost', type: 'unsubscribed' }));
    await cancelled;
    await sleep(QUIET_MS);
    t.equal(presencesFrom(daveSeen, 'carol@localhost').length, 0, 'dave saw nothing (RFC 6121 §3.2.2 rule 2)');

    // dave's request now waits for carol again.
    const asked = nextStanza(carol, presenceFrom('dave@localhost', 'subscribe'));
    await dave.send(xml('presence', { to: 'carol@localhost', type: 'subscribe' }));
    await asked;
    t.pass('a later request is shown to carol');
    await Promise.all([carol.stop(), dave.stop()]);
  });

  await t.test('unsubscribe ends the subscription on both sides', async (t) => {
    await seedItem(server, 'erin', 'frank', 'to');
    await seedItem(server, 'frank', 'erin', 'from');
    const frank = await server.login('frank', { resource: 'f' });
    const erin = await server.login('erin', { resource: 'e', presence: false });
    await Promise.all([rosterGet(erin), rosterGet(frank)]);
    const frankOnline = nextStanza(erin, presenceFrom('frank@localhost/f'));
    await erin.send(xml('presence'));
    await frankOnline;

    const erinNone = nextPush(erin, 'frank@localhost', (i) => i.attrs.subscription === 'none');
    const frankNone = nextPush(frank, 'erin@localhost', (i) => i.attrs.subscription === 'none');
    const told = nextStanza(frank, presenceFrom('erin@localhost', 'unsubscribe'));
    const offline = nextStanza(erin, presenceFrom('frank@localhost/f', 'unavailable'));
    await erin.send(xml('presence', { to: 'frank@localhost', type: 'unsubscribe' }));
    await Promise.all([erinNone, frankNone, told, offline]);
    t.pass("both rosters say none, frank was told and erin saw frank's unavailable");
    await Promise.all([erin.stop(), frank.stop()]);
  });

  await t.test('a subscription request to a JID that does not exist is answered with unsubscribed', async (t) => {
    const gina = await server.login('gina');
    await rosterGet(gina);
    const answer = nextStanza(gina, presenceFrom('ghost@localhost', 'unsubscribed'));
    const cleared = nextPush(gina, 'ghost@localhost', (i) => i.attrs.subscription === 'none' && !i.attrs.ask);
    await gina.send(xml('presence', { to: 'ghost@localhost', type: 'subscribe' }));
    await answer;
    await cleared;
    t.pass('gina is told and her pending request is cleared');
    await gina.stop();
  });

  await t.test("presence across several resources of the user and of the contact", async (t) => {
    await seedMutual(server, 'henry', 'alice');
    const a1 = await server.login('alice', { resource: 'one', presence: false });
    const a2 = await server.login('alice', { resource: 'two', presence: false });
    const h1 = await server.login('henry', { resource: 'one' });
    const h2 = await server.login('henry', { resource: 'two' });

    // a1's initial presence goes to itself, to alice's other available resources and to both of henry's.
    const selfEcho = nextStanza(a1, presenceFrom('alice@localhost/one'));
    const onH1 = nextStanza(h1, presenceFrom('alice@localhost/one'));
    const onH2 = nextStanza(h2, presenceFrom('alice@localhost/one'));
    await a1.send(xml('presence'));
    await Promise.all([selfEcho, onH1, onH2]);
    t.pass('own resource and every resource of the contact');

    // a2 comes online: it is told about a1 (and henry's resources by probe); a1 sees a2.
    const a2SeesA1 = nextStanza(a2, presenceFrom('alice@localhost/one'));
    const a2SeesH1 = nextStanza(a2, presenceFrom('henry@localhost/one'));
    const a2SeesH2 = nextStanza(a2, presenceFrom('henry@localhost/two'));
    const a1SeesA2 = nextStanza(a1, presenceFrom('alice@localhost/two'));
    await a2.send(xml('presence'));
    await Promise.all([a2SeesA1, a2SeesH1, a2SeesH2, a1SeesA2]);
    t.pass('a new resource learns of the other resources, and they of it');

    // Directed presence to one full JID reaches that resource only.
    const h2Seen = collect(h2);
    const onlyH1 = nextStanza(h1, (s) => presenceFrom('alice@localhost/two')(s) && s.getChildText('status') === 'psst');
    await a2.send(xml('presence', { to: 'henry@localhost/one' }, xml('status', {}, 'psst')));
    await onlyH1;
    await sleep(QUIET_MS);
    t.equal(h2Seen.filter((s) => s.is('presence') && s.getChildText('status') === 'psst').length, 0, 'not the other resource');

    // One resource going away is seen by the user's other resources and by the contact's.
    const a2SeesGone = nextStanza(a2, presenceFrom('alice@localhost/one', 'unavailable'));
    const h2SeesGone = nextStanza(h2, presenceFrom('alice@localhost/one', 'unavailable'));
    await a1.stop();
    await Promise.all([a2SeesGone, h2SeesGone]);
    t.pass('unavailable reaches the own and the contact resources');
    await Promise.all([a2.stop(), h1.stop(), h2.stop()]);
  });

  await t.test('a resource that only sent directed presence still says goodbye when its connection drops', async (t) => {
    const judy = await server.login('judy', { resource: 'j' });
    const ivan = await server.login('ivan', { resource: 'bot', presence: false, resumption: false });
    const hello = nextStanza(judy, presenceFrom('ivan@localhost/bot'));
    await ivan.send(xml('presence', { to: 'judy@localhost/j' }));
    await hello;
    const bye = nextStanza(judy, presenceFrom('ivan@localhost/bot', 'unavailable'));
    dropConnection(ivan);
    await bye;
    t.pass('the directed recipient got unavailable (RFC 6121 §4.6.2)');
    await judy.stop();
  });

  await t.test('removing a contact that asked for a subscription denies the request', async (t) => {
    const bob = await server.login('bob');
    const dave = await server.login('dave');
    await rosterGet(dave);
    const asked = nextStanza(dave, presenceFrom('bob@localhost', 'subscribe'));
    await bob.send(xml('presence', { to: 'dave@localhost', type: 'subscribe' }));
    await asked;
    await rosterSet(dave, item('bob@localhost', { name: 'Bob' }));
    const denied = nextStanza(bob, presenceFrom('dave@localhost', 'unsubscribed'));
    await rosterSet(dave, item('bob@localhost', { subscription: 'remove' }));
    await denied;
    t.pass('bob is told');
    await Promise.all([bob.stop(), dave.stop()]);
  });
});
