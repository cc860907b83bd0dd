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
  items,
  nodeConfig,
  publish,
  pubsubErrorOf,
  pubsubIq,
  subscribe,
} from '../../helpers/pubsub';
import { nextStanza, startTestServer, xml } from '../../helpers/server';

const SERVICE = 'pubsub.localhost';
const DISCO_INFO = 'http://jabber.org/protocol/disco#info';
const DISCO_ITEMS = 'http://jabber.org/protocol/disco#items';
const ARGS = ['--comp-name-1=pubsub', '--comp-class-1=pubsub', '--admins=root@localhost'];

const configureForm = async (client: Parameters<typeof pubsubIq>[0], node: string) => {
  const result = await pubsubIq(client, SERVICE, 'get', PUBSUB_OWNER, xml('configure', { node }));
  return formValues(result.getChild('pubsub', PUBSUB_OWNER)!.getChild('configure')!.getChild('x', DATA_FORMS));
};

forEachDatabase('pubsub nodes: create, configure, delete, purge, discover', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri, args: ARGS });
  for (const user of ['alice', 'bob', 'carol']) await server.addUser(user);
  const alice = await server.login('alice', { resource: 'desk' });
  const bob = await server.login('bob', { resource: 'phone' });

  await t.test('the service is discoverable as pubsub/service with its XEP-0060 features', async (t) => {
    const items = await bob.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('query', { xmlns: DISCO_ITEMS })));
    t.ok(items.getChild('query')!.getChildren('item').some((i: Element) => i.attrs.jid === SERVICE), 'the server lists pubsub.localhost');
    const info = await bob.iqCaller.request(xml('iq', { type: 'get', to: SERVICE }, xml('query', { xmlns: DISCO_INFO })));
    const query = info.getChild('query', DISCO_INFO)!;
    t.same(query.getChildren('identity').map((i: Element) => `${i.attrs.category}/${i.attrs.type}`), ['pubsub/service']);
    const features = query.getChildren('feature').map((f: Element) => f.attrs.var);
    for (const f of ['create-nodes', 'instant-nodes', 'publish', 'subscribe', 'retrieve-items', 'persistent-items', 'publish-options', 'access-whitelist', 'purge-nodes', 'delete-nodes', 'retract-items', 'modify-affiliations', 'manage-subscriptions', 'retrieve-subscriptions', 'retrieve-affiliations']) {
      t.ok(features.includes(`${PUBSUB}#${f}`), `advertises pubsub#${f}`);
    }
  });

  await t.test('a user creates a node with an id; creating it again is a conflict', async (t) => {
    const result = await createNode(alice, SERVICE, 'news');
    t.equal(result.attrs.type, 'result');
    t.equal(await pubsubErrorOf(createNode(bob, SERVICE, 'news')), 'conflict');
  });

  await t.test('an instant node gets an id from the service', async (t) => {
    const result = await createNode(alice, SERVICE);
    const id = result.getChild('pubsub', PUBSUB)?.getChild('create')?.attrs.node;
    t.ok(id, `the result names the new node (${id})`);
    const info = await bob.iqCaller.request(xml('iq', { type: 'get', to: SERVICE }, xml('query', { xmlns: DISCO_INFO, node: id })));
    t.equal(info.getChild('query')!.getChild('identity')!.attrs.type, 'leaf', 'and it exists');
  });

  await t.test('create-and-configure applies the form; the owner reads it back and changes it', async (t) => {
    await createNode(alice, SERVICE, 'configured', { 'pubsub#title': 'Configured node', 'pubsub#max_items': '3', 'pubsub#access_model': 'presence' });
    const form = await configureForm(alice, 'configured');
    t.same(form.get('pubsub#title'), ['Configured node']);
    t.same(form.get('pubsub#max_items'), ['3']);
    t.same(form.get('pubsub#access_model'), ['presence']);
    await pubsubIq(alice, SERVICE, 'set', PUBSUB_OWNER, xml('configure', { node: 'configured' }, nodeConfig({ 'pubsub#title': 'Renamed', 'pubsub#access_model': 'open' })));
    const after = await configureForm(alice, 'configured');
    t.same(after.get('pubsub#title'), ['Renamed']);
    t.same(after.get('pubsub#access_model'), ['open']);
    t.same(after.get('pubsub#max_items'), ['3'], 'fields left out keep their value');
  });

  await t.test('configuration errors: forbidden to non-owners, not-acceptable for bad values, item-not-found for missing nodes', async (t) => {
    t.equal(await pubsubErrorOf(configureForm(bob, 'configured')), 'forbidden');
    t.equal(
      await pubsubErrorOf(pubsubIq(alice, SERVICE, 'set', PUBSUB_OWNER, xml('configure', { node: 'configured' }, nodeConfig({ 'pubsub#access_model': 'everyone' })))),
      'not-acceptable',
    );
    t.equal(await pubsubErrorOf(pubsubIq(alice, SERVICE, 'set', PUBSUB_OWNER, xml('configure', { node: 'configured' }, nodeConfig({ 'pubsub#max_items': '-1' })))), 'not-acceptable', 'max_items that is no count');
    t.equal(await pubsubErrorOf(configureForm(alice, 'no-such-node')), 'item-not-found');
    t.equal(await pubsubErrorOf(createNode(alice, SERVICE, 'bad-config', { 'pubsub#publish_model': 'nobody' })), 'not-acceptable', 'a bad form fails the creation');
    t.equal(await pubsubErrorOf(configureForm(alice, 'bad-config')), 'item-not-found', 'and nothing was created');
  });

  await t.test('max_items above the service limit means the limit, as "max" does', async (t) => {
    await createNode(alice, SERVICE, 'big', { 'pubsub#max_items': '5000' });
    t.same((await configureForm(alice, 'big')).get('pubsub#max_items'), ['1000'], 'the service limit (--pubsub-max-items-limit, 1000)');
    await pubsubIq(alice, SERVICE, 'set', PUBSUB_OWNER, xml('configure', { node: 'big' }, nodeConfig({ 'pubsub#max_items': '9999' })));
    t.same((await configureForm(alice, 'big')).get('pubsub#max_items'), ['1000']);
  });

  await t.test('the default configuration carries the service defaults', async (t) => {
    const result = await pubsubIq(bob, SERVICE, 'get', PUBSUB_OWNER, xml('default'));
    const form = formValues(result.getChild('pubsub', PUBSUB_OWNER)!.getChild('default')!.getChild('x', DATA_FORMS));
    t.same(form.get('pubsub#max_items'), ['10']);
    t.same(form.get('pubsub#access_model'), ['open']);
    t.same(form.get('pubsub#persist_items'), ['1']);
  });

  await t.test('disco lists the nodes and describes one with the meta-data form', async (t) => {
    const result = await bob.iqCaller.request(xml('iq', { type: 'get', to: SERVICE }, xml('query', { xmlns: DISCO_ITEMS })));
    const nodes = result.getChild('query')!.getChildren('item').map((i: Element) => i.attrs.node);
    t.ok(nodes.includes('news') && nodes.includes('configured'), `lists the nodes (${nodes.join(', ')})`);
    const info = await bob.iqCaller.request(xml('iq', { type: 'get', to: SERVICE }, xml('query', { xmlns: DISCO_INFO, node: 'configured' })));
    const query = info.getChild('query', DISCO_INFO)!;
    t.equal(query.getChild('identity')!.attrs.category, 'pubsub');
    const meta = formValues(query.getChild('x', DATA_FORMS));
    t.same(meta.get('FORM_TYPE'), ['http://jabber.org/protocol/pubsub#meta-data']);
    t.same(meta.get('pubsub#title'), ['Renamed']);
    t.same(meta.get('pubsub#owner'), ['alice@localhost']);
    t.equal(await pubsubErrorOf(bob.iqCaller.request(xml('iq', { type: 'get', to: SERVICE }, xml('query', { xmlns: DISCO_INFO, node: 'nothing-here' })))), 'item-not-found');
  });

  await t.test('purging removes every item and tells subscribers', async (t) => {
    await createNode(alice, SERVICE, 'purgeable');
    await publish(alice, SERVICE, 'purgeable', entry('one'));
    await publish(alice, SERVICE, 'purgeable', entry('two'));
    await subscribe(bob, SERVICE, 'purgeable');
    const told = nextStanza(bob, (s) => s.is('message') && s.getChild('event', PUBSUB_EVENT)?.getChild('purge')?.attrs.node === 'purgeable');
    t.equal(await pubsubErrorOf(pubsubIq(bob, SERVICE, 'set', PUBSUB_OWNER, xml('purge', { node: 'purgeable' }))), 'forbidden', 'only owners purge');
    await pubsubIq(alice, SERVICE, 'set', PUBSUB_OWNER, xml('purge', { node: 'purgeable' }));
    await told;
    t.same(await items(bob, SERVICE, 'purgeable'), [], 'no items left');
  });

  await t.test('deleting a node tells its subscribers and removes it', async (t) => {
    await createNode(alice, SERVICE, 'doomed');
    await subscribe(bob, SERVICE, 'doomed');
    const told = nextStanza(bob, (s) => s.is('message') && s.getChild('event', PUBSUB_EVENT)?.getChild('delete')?.attrs.node === 'doomed');
    t.equal(await pubsubErrorOf(pubsubIq(bob, SERVICE, 'set', PUBSUB_OWNER, xml('delete', { node: 'doomed' }))), 'forbidden', 'only owners delete');
    await pubsubIq(alice, SERVICE, 'set', PUBSUB_OWNER, xml('delete', { node: 'doomed' }));
    const message = await told;
    t.equal(message.attrs.from, SERVICE);
    t.equal(await pubsubErrorOf(items(bob, SERVICE, 'doomed')), 'item-not-found', 'the node is gone');
    await createNode(alice, SERVICE, 'doomed');
    t.pass('and its id can be used again');
  });

  await t.test('a service admin may configure and delete any node', async (t) => {
    await server.addUser('root');
    const root = await server.login('root');
    await pubsubIq(root, SERVICE, 'set', PUBSUB_OWNER, xml('delete', { node: 'news' }));
    t.equal(await pubsubErrorOf(items(alice, SERVICE, 'news')), 'item-not-found');
  });
});

forEachDatabase('node creation restricted to admins', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri, args: [...ARGS, '--pubsub-node-creation=admins'] });
  await server.addUser('root');
  await server.addUser('alice');
  const alice = await server.login('alice');
  const root = await server.login('root');
  t.equal(await pubsubErrorOf(createNode(alice, SERVICE, 'mine')), 'forbidden', 'a user may not create nodes');
  t.equal(await pubsubErrorOf(publish(alice, SERVICE, 'auto', entry('x'))), 'item-not-found', 'nor auto-create one by publishing');
  await createNode(root, SERVICE, 'official');
  t.pass('an admin may');
});
