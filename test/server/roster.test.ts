import { forEachDatabase } from '../helpers/databases';
import { ROSTER, iqErrorCondition, item, nextPush, presenceFrom, pushedItem, rosterGet, rosterItems, rosterSet, seedMutual } from '../helpers/im';
import { collect, nextStanza, sleep, startTestServer, xml } from '../helpers/server';

forEachDatabase('roster (RFC 6121 §2)', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri });
  for (const user of ['alice', 'bob', 'carol', 'dave', 'erin', 'frank']) await server.addUser(user);

  await t.test('an empty roster comes with a version and no items', async (t) => {
    const alice = await server.login('alice', { presence: false });
    const result = await rosterGet(alice);
    const query = result.getChild('query', ROSTER);
    t.ok(query, 'the result carries a query');
    t.match(query?.attrs.ver, /^\S+$/, 'with a non-empty ver');
    t.equal(query?.getChildren('item').length, 0);
    await alice.stop();
  });

  await t.test('adding and updating an item is pushed to every interested resource', async (t) => {
    const laptop = await server.login('bob', { resource: 'laptop', presence: false });
    const phone = await server.login('bob', { resource: 'phone', presence: false });
    const quiet = await server.login('bob', { resource: 'quiet', presence: false });
    await rosterGet(laptop);
    await rosterGet(phone);
    const quietSeen = collect(quiet);

    const onLaptop = nextPush(laptop, 'carol@localhost');
    const onPhone = nextPush(phone, 'carol@localhost');
    const result = await rosterSet(laptop, item('carol@localhost', { name: 'Carol' }, ['Friends', 'Work']));
    t.equal(result.attrs.type, 'result');
    t.equal(result.getChildElements().length, 0, 'a roster set result is empty');
    for (const [name, pushed] of [['laptop', await onLaptop], ['phone', await onPhone]] as const) {
      t.equal(pushed.attrs.name, 'Carol', `${name} got the name`);
      t.equal(pushed.attrs.subscription, 'none', `${name}: a new item has subscription none`);
      t.notOk(pushed.attrs.ask, `${name}: no pending request`);
      t.same(pushed.getChildren('group').map((g) => g.getText()).sort(), ['Friends', 'Work'], `${name} got the groups`);
    }

    // The update replaces name and groups; a client cannot set the subscription itself.
    const updated = nextPush(phone, 'carol@localhost', (i) => i.attrs.name === 'Caroline');
    await rosterSet(laptop, item('carol@localhost', { name: 'Caroline', subscription: 'both' }, ['Family']));
    const pushed = await updated;
    t.equal(pushed.attrs.subscription, 'none', 'subscription stays server-controlled');
    t.same(pushed.getChildren('group').map((g) => g.getText()), ['Family']);

    const items = await rosterItems(phone);
    t.equal(items.size, 1);
    t.equal(items.get('carol@localhost')?.attrs.name, 'Caroline');
    t.same(items.get('carol@localhost')?.getChildren('group').map((g) => g.getText()), ['Family']);

    await sleep(150);
    t.equal(quietSeen.filter((s) => pushedItem(s, 'carol@localhost')).length, 0, 'a resource that never asked for the roster gets no pushes');
    await Promise.all([laptop.stop(), phone.stop(), quiet.stop()]);
  });

  await t.test('roster versioning: the current ver gets an empty result, an old one the full roster', async (t) => {
    const carol = await server.login('carol', { presence: false });
    const first = (await rosterGet(carol)).getChild('query', ROSTER)!;
    const ver = first.attrs.ver as string;

    const same = await rosterGet(carol, ver);
    t.equal(same.attrs.type, 'result');
    t.equal(same.getChildElements().length, 0, 'same ver: an empty result (RFC 6121 §2.6.3)');

    const pushed = nextStanza(carol, (s) => pushedItem(s, 'dave@localhost') !== undefined);
    await rosterSet(carol, item('dave@localhost'));
    const pushVer = (await pushed).getChild('query', ROSTER)?.attrs.ver;
    t.ok(pushVer, 'the push carries the new ver');
    t.not(pushVer, ver, 'the ver changed with the roster');

    const stale = (await rosterGet(carol, ver)).getChild('query', ROSTER);
    t.ok(stale, 'an old ver gets the roster');
    t.equal(stale?.attrs.ver, pushVer, 'with the ver of the last push');
    t.same(stale?.getChildren('item').map((i) => i.attrs.jid), ['dave@localhost']);

    const current = await rosterGet(carol, pushVer);
    t.equal(current.getChildElements().length, 0, 'the pushed ver is current');

    const empty = (await rosterGet(carol, '')).getChild('query', ROSTER);
    t.equal(empty?.getChildren('item').length, 1, "ver='' asks for the whole roster");
    await carol.stop();
  });

  await t.test('bad roster sets are refused with the RFC 6121 §2.3.3 errors', async (t) => {
    const dave = await server.login('dave', { presence: false });
    t.equal(await iqErrorCondition(rosterSet(dave, item('erin@localhost'), item('frank@localhost'))), 'bad-request', 'two items');
    t.equal(await iqErrorCondition(rosterSet(dave, item('erin@localhost', {}, ['A', 'A']))), 'bad-request', 'a group listed twice');
    t.equal(await iqErrorCondition(rosterSet(dave, item('erin@localhost', {}, ['']))), 'not-acceptable', 'an empty group');
    t.equal(await iqErrorCondition(rosterSet(dave)), 'bad-request', 'no item');
    t.equal(await iqErrorCondition(rosterSet(dave, item('erin@localhost', { subscription: 'remove' }))), 'item-not-found', 'removing what is not there');
    t.equal((await rosterItems(dave)).size, 0, 'nothing was stored');

    const other = (type: 'get' | 'set') =>
      dave.iqCaller.request(xml('iq', { type, to: 'erin@localhost' }, xml('query', { xmlns: ROSTER }, ...(type === 'set' ? [item('dave@localhost')] : []))));
    t.equal(await iqErrorCondition(other('get')), 'forbidden', "reading another user's roster");
    t.equal(await iqErrorCondition(other('set')), 'forbidden', "writing another user's roster");

    const own = await dave.iqCaller.request(xml('iq', { type: 'get', to: 'dave@localhost' }, xml('query', { xmlns: ROSTER })));
    t.equal(own.attrs.type, 'result', 'addressing the own bare JID is fine');
    await dave.stop();
  });

  await t.test('removing a contact pushes the removal and cancels the subscriptions both ways', async (t) => {
    await seedMutual(server, 'erin', 'frank');
    const erin = await server.login('erin', { resource: 'a' });
    const erin2 = await server.login('erin', { resource: 'b', presence: false });
    const frank = await server.login('frank', { resource: 'f' });
    await Promise.all([rosterGet(erin), rosterGet(erin2), rosterGet(frank)]);

    const removedA = nextPush(erin, 'frank@localhost', (i) => i.attrs.subscription === 'remove');
    const removedB = nextPush(erin2, 'frank@localhost', (i) => i.attrs.subscription === 'remove');
    const unsubscribe = nextStanza(frank, presenceFrom('erin@localhost', 'unsubscribe'));
    const unsubscribed = nextStanza(frank, presenceFrom('erin@localhost', 'unsubscribed'));
    const erinGone = nextStanza(frank, presenceFrom('erin@localhost/a', 'unavailable'));
    const frankGone = nextStanza(erin, presenceFrom('frank@localhost/f', 'unavailable'));
    const frankNone = nextPush(frank, 'erin@localhost', (i) => i.attrs.subscription === 'none');

    await rosterSet(erin, item('frank@localhost', { subscription: 'remove' }));
    await Promise.all([removedA, removedB]);
    t.pass('both interested resources got the removal push');
    await unsubscribe;
    await unsubscribed;
    t.pass('the contact got unsubscribe and unsubscribed');
    await erinGone;
    t.pass("the contact saw the user's resources go unavailable");
    await frankGone;
    t.pass("the user saw the contact's resources go unavailable");
    await frankNone;

    t.notOk((await rosterItems(erin)).has('frank@localhost'), 'the item is gone');
    const frankItem = (await rosterItems(frank)).get('erin@localhost');
    t.equal(frankItem?.attrs.subscription, 'none', "the contact's item ends at none");
    t.notOk(frankItem?.attrs.ask);
    await Promise.all([erin.stop(), erin2.stop(), frank.stop()]);
  });
});
