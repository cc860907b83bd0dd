import type { Element } from 'ltx';
import { forEachDatabase } from '../../helpers/databases';
import { waitUntil } from '../../helpers/im';
import { PUBSUB, PUBSUB_EVENT, PUBSUB_OWNER, createNode, entry, isEventFor, items, nextEvent, publish, pubsubErrorOf, pubsubIq, subscribe } from '../../helpers/pubsub';
import { collect, nextStanza, startTestServer, xml } from '../../helpers/server';

const SERVICE = 'pubsub.localhost';
const ARGS = ['--comp-name-1=pubsub', '--comp-class-1=pubsub', '--pubsub-max-payload-size=2048'];

const texts = (list: Element[]) => list.map((item) => item.getChild('entry')?.getText() ?? '(no payload)');
const ids = (list: Element[]) => list.map((item) => item.attrs.id as string);

forEachDatabase('pubsub publishing, items and notifications', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri, args: ARGS });
  for (const user of ['alice', 'bob', 'carol']) await server.addUser(user);
  const alice = await server.login('alice', { resource: 'desk' });
  const bob = await server.login('bob', { resource: 'phone' });
  const carol = await server.login('carol', { resource: 'laptop' });
  await createNode(alice, SERVICE, 'blog', { 'pubsub#max_items': '3' });

  await t.test('subscribers (bare and full JID) get each published item with its payload', async (t) => {
    const bobSub = await subscribe(bob, SERVICE, 'blog');
    t.equal(bobSub.attrs.subscription, 'subscribed');
    t.ok(bobSub.attrs.subid, 'a subid comes back');
    await subscribe(carol, SERVICE, 'blog', 'carol@localhost/laptop');
    const toBob = nextEvent(bob, 'blog');
    const toCarol = nextEvent(carol, 'blog');
    const id = await publish(alice, SERVICE, 'blog', entry('first post'), 'post-1');
    t.equal(id, 'post-1', 'the item keeps the id the publisher chose');
    for (const message of [await toBob, await toCarol]) {
      t.equal(message.attrs.from, SERVICE);
      const item = message.getChild('event', PUBSUB_EVENT)!.getChild('items')!.getChild('item')!;
      t.equal(item.attrs.id, 'post-1');
      t.equal(item.getChild('entry', 'urn:example:entry')?.getText(), 'first post', 'with the payload');
    }
  });

  await t.test('an item published without an id gets one from the service', async (t) => {
    const event = nextEvent(bob, 'blog');
    const id = await publish(alice, SERVICE, 'blog', entry('second post'));
    t.ok(id && id.length > 8, `generated id ${id}`);
    t.equal((await event).getChild('event', PUBSUB_EVENT)!.getChild('items')!.getChild('item')!.attrs.id, id, 'the notification carries it');
  });

  await t.test('items keep the newest max_items, oldest first; republishing an id replaces the item', async (t) => {
    await publish(alice, SERVICE, 'blog', entry('third post'), 'post-3');
    await publish(alice, SERVICE, 'blog', entry('fourth post'), 'post-4');
    const all = await items(bob, SERVICE, 'blog');
    t.same(texts(all), ['second post', 'third post', 'fourth post'], 'the first post was dropped for max_items=3');
    await publish(alice, SERVICE, 'blog', entry('third post, edited'), 'post-3');
    t.same(texts(await items(bob, SERVICE, 'blog')), ['second post', 'fourth post', 'third post, edited'], 'the replaced item is now the newest');
  });

  await t.test('items can be fetched by max_items and by id', async (t) => {
    t.same(texts(await items(bob, SERVICE, 'blog', { max_items: '2' })), ['fourth post', 'third post, edited']);
    t.same(ids(await items(bob, SERVICE, 'blog', {}, ['post-4'])), ['post-4']);
    t.same(await items(bob, SERVICE, 'blog', {}, ['no-such-item']), [], 'an unknown id yields nothing');
    t.equal(await pubsubErrorOf(items(bob, SERVICE, 'nothing')), 'item-not-found', 'an unknown node is item-not-found');
  });

  await t.test('retracting an item removes it and notifies subscribers', async (t) => {
    const retracted = nextStanza(bob, (s) => s.is('message') && s.getChild('event', PUBSUB_EVENT)?.getChild('items')?.getChild('retract')?.attrs.id === 'post-4');
    t.equal(await pubsubErrorOf(pubsubIq(bob, SERVICE, 'set', PUBSUB, xml('retract', { node: 'blog' }, xml('item', { id: 'post-4' })))), 'forbidden', 'a non-publisher may not');
    await pubsubIq(alice, SERVICE, 'set', PUBSUB, xml('retract', { node: 'blog', notify: 'true' }, xml('item', { id: 'post-4' })));
    await retracted;
    t.notOk(ids(await items(bob, SERVICE, 'blog')).includes('post-4'), 'the item is gone');
    t.equal(await pubsubErrorOf(pubsubIq(alice, SERVICE, 'set', PUBSUB, xml('retract', { node: 'blog' }, xml('item', { id: 'post-4' })))), 'item-not-found', 'retracting it again');
    t.equal(await pubsubErrorOf(pubsubIq(alice, SERVICE, 'set', PUBSUB, xml('retract', { node: 'blog' }))), 'bad-request/item-required');
  });

  await t.test('publish errors: non-publishers, missing payloads, oversized payloads', async (t) => {
    t.equal(await pubsubErrorOf(publish(bob, SERVICE, 'blog', entry('not mine'))), 'forbidden', 'publish_model publishers: a subscriber may not publish');
    t.equal(await pubsubErrorOf(publish(alice, SERVICE, 'blog', undefined)), 'bad-request/payload-required');
    t.equal(await pubsubErrorOf(publish(alice, SERVICE, 'blog', entry('x'.repeat(3000)))), 'not-acceptable/payload-too-big', 'over --pubsub-max-payload-size');
    t.equal(await pubsubErrorOf(pubsubIq(alice, SERVICE, 'set', PUBSUB, xml('publish', {}, xml('item', {}, entry('no node'))))), 'bad-request/nodeid-required');
  });

  await t.test('publishing to a missing node creates it with the publish-options as configuration', async (t) => {
    await publish(carol, SERVICE, 'carol-notes', entry('auto'), 'n1', { 'pubsub#max_items': '1', 'pubsub#access_model': 'whitelist' });
    const result = await pubsubIq(carol, SERVICE, 'get', PUBSUB_OWNER, xml('affiliations', { node: 'carol-notes' }));
    const affiliation = result.getChild('pubsub', PUBSUB_OWNER)!.getChild('affiliations')!.getChild('affiliation')!;
    t.same([affiliation.attrs.jid, affiliation.attrs.affiliation], ['carol@localhost', 'owner'], 'the publisher owns it');
    t.equal(await pubsubErrorOf(items(bob, SERVICE, 'carol-notes')), 'not-allowed/closed-node', 'the access model came from publish-options');
  });

  await t.test('publish-options that do not match the node fail with precondition-not-met; matching ones publish', async (t) => {
    t.equal(await pubsubErrorOf(publish(carol, SERVICE, 'carol-notes', entry('open?'), 'n2', { 'pubsub#access_model': 'open' })), 'conflict/precondition-not-met');
    await publish(carol, SERVICE, 'carol-notes', entry('still whitelisted'), 'n2', { 'pubsub#access_model': 'whitelist', 'pubsub#max_items': '1' });
    t.same(texts(await items(carol, SERVICE, 'carol-notes')), ['still whitelisted'], 'max_items=1 keeps the newest only');
  });

  await t.test('a node without payload delivery notifies with item ids only', async (t) => {
    await createNode(alice, SERVICE, 'light', { 'pubsub#deliver_payloads': '0' });
    await subscribe(bob, SERVICE, 'light');
    const event = nextEvent(bob, 'light');
    await publish(alice, SERVICE, 'light', entry('heavy payload'), 'only-id');
    const item = (await event).getChild('event', PUBSUB_EVENT)!.getChild('items')!.getChild('item')!;
    t.equal(item.attrs.id, 'only-id');
    t.equal(item.getChildElements().length, 0, 'no payload in the notification');
    t.same(texts(await items(bob, SERVICE, 'light')), ['heavy payload'], 'but the item is stored with it');
  });

  await t.test('a transient node (persist_items off) notifies but keeps nothing', async (t) => {
    await createNode(alice, SERVICE, 'ticker', { 'pubsub#persist_items': '0' });
    await subscribe(bob, SERVICE, 'ticker');
    const event = nextEvent(bob, 'ticker');
    await publish(alice, SERVICE, 'ticker', entry('tick'));
    t.equal((await event).getChild('event', PUBSUB_EVENT)!.getChild('items')!.getChild('item')!.getChild('entry')?.getText(), 'tick');
    t.same(await items(bob, SERVICE, 'ticker'), [], 'nothing stored');
    t.equal(
      await pubsubErrorOf(pubsubIq(alice, SERVICE, 'set', PUBSUB_OWNER, xml('purge', { node: 'ticker' }))),
      'feature-not-implemented/unsupported',
      'and nothing to purge',
    );
  });

  await t.test('the open publish model lets anyone publish; notifications keep publication order', async (t) => {
    await createNode(alice, SERVICE, 'wall', { 'pubsub#publish_model': 'open', 'pubsub#max_items': '20' });
    await subscribe(alice, SERVICE, 'wall');
    const seen = collect(alice);
    const posts = Array.from({ length: 8 }, (_, i) => `post ${i}`);
    await Promise.all(posts.map((text, i) => publish(i % 2 === 0 ? bob : carol, SERVICE, 'wall', entry(text), `w${i}`)));
    const stored = ids(await items(alice, SERVICE, 'wall'));
    t.equal(stored.length, 8, 'every post stored');
    const notified = () => seen.filter((s) => isEventFor(s, 'wall')).map((s) => s.getChild('event', PUBSUB_EVENT)?.getChild('items')?.getChild('item')?.attrs.id);
    await waitUntil(() => notified().length === 8, 5000, 'eight notifications');
    t.same(notified(), stored, 'notifications arrive in the order the items were stored');
  });
});
