import { forEachDatabase } from '../../helpers/databases';
import { item, rosterSet } from '../../helpers/im';
import { PUBSUB_OWNER, createNode, entry, items, nodeConfig, publish, pubsubErrorOf, pubsubIq, subscribe } from '../../helpers/pubsub';
import { startTestServer, xml } from '../../helpers/server';
import { subscribe as presenceSubscribe } from '../../helpers/subscriptions';

const SERVICE = 'pubsub.localhost';
const ARGS = ['--comp-name-1=pubsub', '--comp-class-1=pubsub'];

forEachDatabase('pubsub access models', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri, args: ARGS });
  for (const user of ['alice', 'bob', 'carol', 'mallory']) await server.addUser(user);
  const alice = await server.login('alice', { resource: 'desk' });
  const bob = await server.login('bob', { resource: 'phone' });
  const carol = await server.login('carol', { resource: 'laptop' });
  const mallory = await server.login('mallory');
  // bob has a presence subscription to alice; carol is in alice's roster group "friends" without one.
  await presenceSubscribe(bob, alice);
  await rosterSet(alice, item('carol@localhost', {}, ['friends']));

  await t.test('open: anyone may subscribe and read', async (t) => {
    await createNode(alice, SERVICE, 'open-node', { 'pubsub#access_model': 'open' });
    await publish(alice, SERVICE, 'open-node', entry('public'));
    t.equal((await items(mallory, SERVICE, 'open-node')).length, 1);
    t.equal((await subscribe(mallory, SERVICE, 'open-node')).attrs.subscription, 'subscribed');
  });

  await t.test("presence: only entities subscribed to the owner's presence", async (t) => {
    await createNode(alice, SERVICE, 'presence-node', { 'pubsub#access_model': 'presence' });
    await publish(alice, SERVICE, 'presence-node', entry('for contacts'));
    t.equal((await items(bob, SERVICE, 'presence-node')).length, 1, 'bob, subscribed to alice, reads');
    t.equal((await subscribe(bob, SERVICE, 'presence-node')).attrs.subscription, 'subscribed');
    t.equal(await pubsubErrorOf(items(mallory, SERVICE, 'presence-node')), 'not-authorized/presence-subscription-required');
    t.equal(await pubsubErrorOf(subscribe(carol, SERVICE, 'presence-node')), 'not-authorized/presence-subscription-required', 'a roster entry without subscription is not enough');
  });

  await t.test("roster: only members of the allowed groups in the owner's roster", async (t) => {
    await createNode(alice, SERVICE, 'roster-node', { 'pubsub#access_model': 'roster', 'pubsub#roster_groups_allowed': ['friends'] });
    await publish(alice, SERVICE, 'roster-node', entry('for friends'));
    t.equal((await items(carol, SERVICE, 'roster-node')).length, 1, 'carol in "friends" reads');
    t.equal(await pubsubErrorOf(items(bob, SERVICE, 'roster-node')), 'not-authorized/not-in-roster-group', 'bob is in no allowed group');
    await rosterSet(alice, item('bob@localhost', { subscription: 'from' }, ['friends']));
    t.equal((await items(bob, SERVICE, 'roster-node')).length, 1, 'after alice puts bob in "friends", he reads');
  });

  await t.test('whitelist: only affiliated entities; the owner adds members', async (t) => {
    await createNode(alice, SERVICE, 'closed', { 'pubsub#access_model': 'whitelist' });
    await publish(alice, SERVICE, 'closed', entry('secret'));
    t.equal(await pubsubErrorOf(items(bob, SERVICE, 'closed')), 'not-allowed/closed-node');
    t.equal(await pubsubErrorOf(subscribe(mallory, SERVICE, 'closed')), 'not-allowed/closed-node');
    await pubsubIq(alice, SERVICE, 'set', PUBSUB_OWNER, xml('affiliations', { node: 'closed' }, xml('affiliation', { jid: 'bob@localhost', affiliation: 'member' })));
    t.equal((await items(bob, SERVICE, 'closed')).length, 1, 'a member reads');
    t.equal((await items(alice, SERVICE, 'closed')).length, 1, 'the owner always reads');
  });

  await t.test('changing the access model takes effect at once', async (t) => {
    await pubsubIq(alice, SERVICE, 'set', PUBSUB_OWNER, xml('configure', { node: 'open-node' }, nodeConfig({ 'pubsub#access_model': 'whitelist' })));
    t.equal(await pubsubErrorOf(items(carol, SERVICE, 'open-node')), 'not-allowed/closed-node');
  });
});
