import type { Element } from 'ltx';
import { forEachDatabase } from '../../helpers/databases';
import {
  DATA_FORMS,
  PUBSUB,
  PUBSUB_EVENT,
  PUBSUB_OWNER,
  createNode,
  entry,
  formValues,
  isEventFor,
  items,
  nextEvent,
  publish,
  pubsubErrorOf,
  pubsubIq,
  submitForm,
  subscribe,
} from '../../helpers/pubsub';
import { collect, nextStanza, startTestServer, xml } from '../../helpers/server';

const SERVICE = 'pubsub.localhost';
const ARGS = ['--comp-name-1=pubsub', '--comp-class-1=pubsub'];
const SUBSCRIBE_OPTIONS = 'http://jabber.org/protocol/pubsub#subscribe_options';

const attrsOf = (list: Element[] | undefined, ...names: string[]) => (list ?? []).map((e) => names.map((n) => e.attrs[n]).join(' '));

forEachDatabase('pubsub subscriptions and affiliations', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri, args: ARGS });
  for (const user of ['alice', 'bob', 'carol']) await server.addUser(user);
  const alice = await server.login('alice', { resource: 'desk' });
  const bob = await server.login('bob', { resource: 'phone' });
  const carol = await server.login('carol', { resource: 'laptop' });
  await createNode(alice, SERVICE, 'updates');
  await createNode(alice, SERVICE, 'releases');

  await t.test('a new subscriber gets the last published item at once', async (t) => {
    await publish(alice, SERVICE, 'releases', entry('v1.0'), 'r1');
    await publish(alice, SERVICE, 'releases', entry('v1.1'), 'r2');
    const last = nextEvent(carol, 'releases');
    await subscribe(carol, SERVICE, 'releases');
    const message = await last;
    const item = message.getChild('event', PUBSUB_EVENT)!.getChild('items')!.getChild('item')!;
    t.equal(item.attrs.id, 'r2', 'only the newest item');
    t.ok(message.getChild('delay', 'urn:xmpp:delay'), 'stamped with when it was published');
  });

  await t.test('unsubscribing stops notifications; unsubscribing twice is not-subscribed', async (t) => {
    const subscription = await subscribe(bob, SERVICE, 'updates');
    await nextEventAfterPublish(t, bob, 'u1');
    await pubsubIq(bob, SERVICE, 'set', PUBSUB, xml('unsubscribe', { node: 'updates', jid: 'bob@localhost', subid: subscription.attrs.subid }));
    const seen = collect(bob);
    await publish(alice, SERVICE, 'updates', entry('after unsubscribe'), 'u2');
    // A fresh subscriber's notification for the same item proves the fan-out is over.
    await subscribe(carol, SERVICE, 'updates');
    await publish(alice, SERVICE, 'updates', entry('marker'), 'u3');
    await nextEvent(carol, 'updates', (i) => i.getChild('item')?.attrs.id === 'u3');
    t.equal(seen.filter((s) => isEventFor(s, 'updates')).length, 0, 'bob got nothing after unsubscribing');
    t.equal(await pubsubErrorOf(pubsubIq(bob, SERVICE, 'set', PUBSUB, xml('unsubscribe', { node: 'updates', jid: 'bob@localhost' }))), 'unexpected-request/not-subscribed');
  });

  await t.test('subscription errors name the problem', async (t) => {
    t.equal(await pubsubErrorOf(subscribe(bob, SERVICE, 'updates', 'carol@localhost')), 'bad-request/invalid-jid', 'subscribing someone else');
    t.equal(await pubsubErrorOf(subscribe(bob, SERVICE, 'missing')), 'item-not-found');
    await subscribe(bob, SERVICE, 'updates');
    t.equal(
      await pubsubErrorOf(pubsubIq(bob, SERVICE, 'set', PUBSUB, xml('unsubscribe', { node: 'updates', jid: 'bob@localhost', subid: 'wrong' }))),
      'not-acceptable/invalid-subid',
    );
  });

  await t.test('subscription options: the form, and pubsub#deliver off silences notifications', async (t) => {
    const result = await pubsubIq(bob, SERVICE, 'get', PUBSUB, xml('options', { node: 'updates', jid: 'bob@localhost' }));
    const options = result.getChild('pubsub', PUBSUB)!.getChild('options')!;
    const form = formValues(options.getChild('x', DATA_FORMS));
    t.same(form.get('FORM_TYPE'), [SUBSCRIBE_OPTIONS]);
    t.same(form.get('pubsub#deliver'), ['1']);
    await pubsubIq(bob, SERVICE, 'set', PUBSUB, xml('options', { node: 'updates', jid: 'bob@localhost' }, submitForm(SUBSCRIBE_OPTIONS, { 'pubsub#deliver': '0' })));
    const seen = collect(bob);
    await publish(alice, SERVICE, 'updates', entry('quiet'), 'u4');
    await nextEvent(carol, 'updates', (i) => i.getChild('item')?.attrs.id === 'u4');
    t.equal(seen.filter((s) => isEventFor(s, 'updates')).length, 0, 'no notification with delivery off');
    t.equal(await pubsubErrorOf(pubsubIq(carol, SERVICE, 'get', PUBSUB, xml('options', { node: 'releases', jid: 'bob@localhost' }))), 'bad-request/invalid-jid');
  });

  await t.test('a user lists their own subscriptions and affiliations at the service', async (t) => {
    const subs = await pubsubIq(carol, SERVICE, 'get', PUBSUB, xml('subscriptions'));
    t.same(attrsOf(subs.getChild('pubsub', PUBSUB)!.getChild('subscriptions')?.getChildren('subscription'), 'node', 'jid', 'subscription'), [
      'releases carol@localhost subscribed',
      'updates carol@localhost subscribed',
    ]);
    const one = await pubsubIq(carol, SERVICE, 'get', PUBSUB, xml('subscriptions', { node: 'releases' }));
    t.equal(one.getChild('pubsub', PUBSUB)!.getChild('subscriptions')!.getChildren('subscription').length, 1, 'filtered by node');
    const affs = await pubsubIq(alice, SERVICE, 'get', PUBSUB, xml('affiliations'));
    t.same(attrsOf(affs.getChild('pubsub', PUBSUB)!.getChild('affiliations')?.getChildren('affiliation'), 'node', 'affiliation'), ['releases owner', 'updates owner']);
  });

  await t.test('the owner manages subscriptions: lists, adds and removes them; the entity is told', async (t) => {
    const list = await pubsubIq(alice, SERVICE, 'get', PUBSUB_OWNER, xml('subscriptions', { node: 'releases' }));
    t.same(attrsOf(list.getChild('pubsub', PUBSUB_OWNER)!.getChild('subscriptions')?.getChildren('subscription'), 'jid', 'subscription'), ['carol@localhost subscribed']);
    t.equal(await pubsubErrorOf(pubsubIq(bob, SERVICE, 'get', PUBSUB_OWNER, xml('subscriptions', { node: 'releases' }))), 'forbidden');

    const told = nextStanza(bob, (s) => s.is('message') && s.getChild('event', PUBSUB_EVENT)?.getChild('subscription')?.attrs.node === 'releases');
    await pubsubIq(alice, SERVICE, 'set', PUBSUB_OWNER, xml('subscriptions', { node: 'releases' }, xml('subscription', { jid: 'bob@localhost', subscription: 'subscribed' })));
    t.equal((await told).getChild('event', PUBSUB_EVENT)!.getChild('subscription')!.attrs.subscription, 'subscribed', 'bob hears he was subscribed');
    await nextEventAfterPublish(t, bob, 'r3', 'releases');

    const removed = nextStanza(carol, (s) => s.is('message') && s.getChild('event', PUBSUB_EVENT)?.getChild('subscription')?.attrs.subscription === 'none');
    await pubsubIq(alice, SERVICE, 'set', PUBSUB_OWNER, xml('subscriptions', { node: 'releases' }, xml('subscription', { jid: 'carol@localhost', subscription: 'none' })));
    await removed;
    const after = await pubsubIq(alice, SERVICE, 'get', PUBSUB_OWNER, xml('subscriptions', { node: 'releases' }));
    t.same(attrsOf(after.getChild('pubsub', PUBSUB_OWNER)!.getChild('subscriptions')?.getChildren('subscription'), 'jid'), ['bob@localhost']);
  });

  await t.test('the owner manages affiliations: a publisher may publish, an outcast may not even read', async (t) => {
    t.equal(await pubsubErrorOf(publish(bob, SERVICE, 'releases', entry('by bob'))), 'forbidden', 'not yet a publisher');
    const told = nextStanza(bob, (s) => s.is('message') && s.getChild('pubsub', PUBSUB)?.getChild('affiliations')?.getChild('affiliation')?.attrs.affiliation === 'publisher');
    await pubsubIq(
      alice,
      SERVICE,
      'set',
      PUBSUB_OWNER,
      xml('affiliations', { node: 'releases' }, xml('affiliation', { jid: 'bob@localhost', affiliation: 'publisher' }), xml('affiliation', { jid: 'carol@localhost', affiliation: 'outcast' })),
    );
    await told;
    await publish(bob, SERVICE, 'releases', entry('by bob'), 'by-bob');
    t.pass('bob publishes as a publisher');
    t.equal(await pubsubErrorOf(items(carol, SERVICE, 'releases')), 'forbidden', 'carol, an outcast, may not read');
    t.equal(await pubsubErrorOf(subscribe(carol, SERVICE, 'releases')), 'forbidden', 'nor subscribe');
    const list = await pubsubIq(alice, SERVICE, 'get', PUBSUB_OWNER, xml('affiliations', { node: 'releases' }));
    t.same(attrsOf(list.getChild('pubsub', PUBSUB_OWNER)!.getChild('affiliations')?.getChildren('affiliation'), 'jid', 'affiliation'), [
      'alice@localhost owner',
      'bob@localhost publisher',
      'carol@localhost outcast',
    ]);
    t.equal(
      await pubsubErrorOf(pubsubIq(alice, SERVICE, 'set', PUBSUB_OWNER, xml('affiliations', { node: 'releases' }, xml('affiliation', { jid: 'alice@localhost', affiliation: 'none' })))),
      'not-acceptable',
      'the last owner cannot leave',
    );
    t.equal(await pubsubErrorOf(pubsubIq(bob, SERVICE, 'set', PUBSUB_OWNER, xml('affiliations', { node: 'releases' }, xml('affiliation', { jid: 'bob@localhost', affiliation: 'owner' })))), 'forbidden');
  });

  async function nextEventAfterPublish(t: { pass(m: string): void }, client: typeof bob, id: string, node = 'updates'): Promise<void> {
    const event = nextEvent(client, node, (i) => i.getChild('item')?.attrs.id === id);
    await publish(alice, SERVICE, node, entry(id), id);
    await event;
    t.pass(`${client.jid?.toString()} got ${id}`);
  }
});
