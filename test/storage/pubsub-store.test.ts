import { forEachDatabase, openTestStorage } from '../helpers/databases';

forEachDatabase('pubsub and caps stores', async (t, uri) => {
  const storage = await openTestStorage(t, uri);
  const { pubsub, caps } = storage;

  await t.test('two creations of the same node at once: exactly one succeeds, its creator owns it', async (t) => {
    const results = await Promise.all([
      pubsub.createNode('pubsub.example.com', 'race', 'a@example.com', { title: 'a' }),
      pubsub.createNode('pubsub.example.com', 'race', 'b@example.com', { title: 'b' }),
    ]);
    const created = results.filter((r) => r !== undefined);
    t.equal(created.length, 1);
    const node = await pubsub.getNode('pubsub.example.com', 'race');
    t.same(node?.config, created[0]!.config, 'the stored configuration is the winner\'s');
    t.equal(await pubsub.affiliation(node!.id, node!.owner), 'owner');
  });

  await t.test('publishing keeps the newest max_items, reports what it dropped, and a republished id becomes the newest', async (t) => {
    const node = (await pubsub.createNode('pubsub.example.com', 'trim', 'a@example.com', {}))!;
    for (const id of ['1', '2', '3']) t.same(await pubsub.publish(node.id, { itemId: id, publisher: 'a@example.com', payload: `<p>${id}</p>` }, 3), []);
    t.same(await pubsub.publish(node.id, { itemId: '4', publisher: 'a@example.com', payload: '<p>4</p>' }, 3), ['1'], 'the oldest was dropped');
    await pubsub.publish(node.id, { itemId: '2', publisher: 'b@example.com', payload: '<p>2 again</p>' }, 3);
    const all = await pubsub.items(node.id);
    t.same(all.map((i) => i.itemId), ['3', '4', '2']);
    t.equal(all[2].publisher, 'b@example.com');
    t.same((await pubsub.items(node.id, { max: 2 })).map((i) => i.itemId), ['4', '2'], 'the newest two, oldest first');
    t.same((await pubsub.items(node.id, { ids: ['3', 'x'] })).map((i) => i.itemId), ['3']);
    t.equal((await pubsub.retract(node.id, '3'))?.payload, '<p>3</p>');
    t.equal(await pubsub.retract(node.id, '3'), undefined, 'retracting twice finds nothing');
    await pubsub.trim(node.id, 1);
    t.same((await pubsub.items(node.id)).map((i) => i.itemId), ['2']);
  });

  await t.test("subscriptions and affiliations: an account's across nodes, replaced in place, removed", async (t) => {
    const one = (await pubsub.createNode('pubsub.example.com', 'one', 'a@example.com', {}))!;
    const two = (await pubsub.createNode('pubsub.example.com', 'two', 'a@example.com', {}))!;
    await pubsub.saveSubscription(one.id, 'c@example.com', { jid: 'c@example.com', subid: 's1', state: 'subscribed', options: {} });
    await pubsub.saveSubscription(two.id, 'c@example.com', { jid: 'c@example.com/phone', subid: 's2', state: 'subscribed', options: {} });
    await pubsub.saveSubscription(two.id, 'c@example.com', { jid: 'c@example.com/phone', subid: 's2', state: 'subscribed', options: { deliver: false } });
    const mine = await pubsub.subscriptionsOf('pubsub.example.com', 'c@example.com');
    t.same(mine.map((s) => `${s.node} ${s.jid} ${s.subid}`), ['one c@example.com s1', 'two c@example.com/phone s2']);
    t.same(mine[1].options, { deliver: false }, 'saving again replaced the options');
    t.equal(await pubsub.removeSubscription(two.id, 'c@example.com/phone', 'other'), 0, 'a wrong subid removes nothing');
    await pubsub.removeSubscriptionsOf(two.id, 'c@example.com');
    t.same((await pubsub.subscriptions(two.id)).length, 0);

    await pubsub.setAffiliation(one.id, 'c@example.com', 'publisher');
    await pubsub.setAffiliation(one.id, 'c@example.com', 'member');
    t.same(await pubsub.affiliationsOf('pubsub.example.com', 'c@example.com'), [{ node: 'one', jid: 'c@example.com', affiliation: 'member' }]);
    await pubsub.setAffiliation(one.id, 'c@example.com', 'none');
    t.equal(await pubsub.affiliation(one.id, 'c@example.com'), 'none');
  });

  await t.test('deleting a node deletes its items, subscriptions and affiliations', async (t) => {
    const node = (await pubsub.createNode('a@example.com', 'urn:example:pep', 'a@example.com', {}))!;
    await pubsub.publish(node.id, { itemId: 'x', publisher: 'a@example.com', payload: '<x/>' }, 5);
    await pubsub.saveSubscription(node.id, 'b@example.com', { jid: 'b@example.com', subid: 's', state: 'subscribed', options: {} });
    t.same((await pubsub.nodesOfServices(['a@example.com', 'nobody@example.com'])).map((n) => n.node), ['urn:example:pep']);
    await pubsub.deleteNode(node.id);
    t.equal(await pubsub.getNode('a@example.com', 'urn:example:pep'), undefined);
    t.same(await pubsub.items(node.id), []);
    t.same(await pubsub.subscriptions(node.id), []);
    t.same(await pubsub.affiliations(node.id), []);
  });

  await t.test('caps: a verified ver is stored once and read back', async (t) => {
    t.equal(await caps.get('ver='), undefined);
    await caps.put('ver=', { hash: 'sha-1', features: ['a', 'b+notify'] });
    await caps.put('ver=', { hash: 'sha-1', features: ['ignored'] });
    t.same(await caps.get('ver='), { hash: 'sha-1', features: ['a', 'b+notify'] }, 'the first write stays');
  });
});
