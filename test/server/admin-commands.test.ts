import type { Element } from 'ltx';
import t from 'tap';
import { ADMIN, COMMANDS, commandStage, fieldValues, noteOf, runAdminCommand } from '../helpers/adhoc';
import { nextStanza, startTestServer, xml, type XmppClient } from '../helpers/server';

const ADMIN_ARGS = ['--admins=boss@localhost'];

/** Resolves with the stream error condition that ends `client`'s stream. */
function streamError(client: XmppClient): Promise<string> {
  return new Promise((resolve) => client.on('error', (err: Error & { condition?: string }) => resolve(err.condition ?? err.message)));
}

const conditionOf = (request: Promise<unknown>) =>
  request.then(() => 'no error', (err: { condition?: string; element?: Element }) => {
    const error = err.element?.name === 'error' ? err.element : err.element?.getChild('error');
    const app = error?.getChildElements().find((c) => c.attrs.xmlns === COMMANDS);
    return app ? `${err.condition}/${app.name}` : String(err.condition ?? err);
  });

t.test('XEP-0050/XEP-0133 admin commands on one node', async (t) => {
  const server = await startTestServer(t, { args: ADMIN_ARGS });
  await server.addUser('boss');
  await server.addUser('alice');
  const boss = await server.login('boss', { resource: 'console' });

  await t.test('the commands are listed to admins only, and refused to others', async (t) => {
    const info = await boss.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })));
    t.ok(info.getChild('query')!.getChildren('feature').some((f: Element) => f.attrs.var === COMMANDS), 'the server advertises ad-hoc commands');
    const items = async (client: XmppClient) => (await client.iqCaller.request(
      xml('iq', { type: 'get', to: 'localhost' }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#items', node: COMMANDS })),
    )).getChild('query')!.getChildren('item').map((i: Element) => i.attrs.node as string);
    const listed = await items(boss);
    for (const name of ['add-user', 'delete-user', 'disable-user', 'reenable-user', 'end-user-session', 'change-user-password', 'user-stats',
      'get-registered-users-num', 'get-online-users-num', 'get-online-users-list', 'announce']) {
      t.ok(listed.includes(`${ADMIN}#${name}`), `${name} is listed`);
    }
    const node = await boss.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info', node: `${ADMIN}#add-user` })));
    t.equal(node.getChild('query')!.getChild('identity')!.attrs.type, 'command-node');

    const alice = await server.login('alice', { resource: 'nosy' });
    t.same(await items(alice), [], 'a user who is not an admin sees none');
    t.equal(await conditionOf(commandStage(alice, `${ADMIN}#get-online-users-num`, { action: 'execute' })), 'forbidden');
    t.equal(await conditionOf(commandStage(boss, `${ADMIN}#no-such-command`, { action: 'execute' })), 'item-not-found');
    await alice.stop();
  });

  await t.test('--admins reloaded (SIGHUP) takes effect at once', async (t) => {
    const alice = await server.login('alice', { resource: 'promoted' });
    t.equal(await conditionOf(commandStage(alice, `${ADMIN}#get-online-users-num`, { action: 'execute' })), 'forbidden');
    const changed = await server.node.reload({ ...server.node.config, admins: ['boss@localhost', 'alice@localhost'] });
    t.match(changed, ['admins=boss@localhost,alice@localhost']);
    t.equal((await commandStage(alice, `${ADMIN}#get-online-users-num`, { action: 'execute' })).attrs.status, 'completed', 'alice is an admin now');
    await server.node.reload({ ...server.node.config, admins: ['boss@localhost'] });
    t.equal(await conditionOf(commandStage(alice, `${ADMIN}#get-online-users-num`, { action: 'execute' })), 'forbidden', 'and no longer');
    await alice.stop();
  });

  await t.test('add-user: a form, then an account a real client logs in with', async (t) => {
    const first = await commandStage(boss, `${ADMIN}#add-user`, { action: 'execute' });
    t.equal(first.attrs.status, 'executing');
    t.ok(first.attrs.sessionid, 'a session id');
    t.same(first.getChild('x', 'jabber:x:data')!.getChildren('field').map((f) => f.attrs.var), ['FORM_TYPE', 'accountjid', 'password', 'password-verify']);
    const done = await commandStage(boss, `${ADMIN}#add-user`, {
      sessionid: first.attrs.sessionid, fields: { accountjid: 'newbie@localhost', password: 'newbie-password', 'password-verify': 'newbie-password' },
    });
    t.equal(done.attrs.status, 'completed');
    t.equal(noteOf(done), 'info: Created newbie@localhost.');
    const newbie = await server.login('newbie', { password: 'newbie-password' });
    t.equal(newbie.jid?.bare().toString(), 'newbie@localhost');
    await newbie.stop();

    t.equal(noteOf(await runAdminCommand(boss, 'add-user', { accountjid: 'newbie@localhost', password: 'another-password', 'password-verify': 'another-password' })),
      'error: newbie@localhost already exists');
    t.equal(noteOf(await runAdminCommand(boss, 'add-user', { accountjid: 'other@localhost', password: 'one-password', 'password-verify': 'two-password' })),
      'error: The two passwords differ.');
    t.match(noteOf(await runAdminCommand(boss, 'add-user', { accountjid: 'other@localhost', password: 'short', 'password-verify': 'short' })), /^error: the password needs at least 8 characters/);
    t.equal(await conditionOf(runAdminCommand(boss, 'add-user', { accountjid: 'x@elsewhere.example', password: 'long-enough-pw', 'password-verify': 'long-enough-pw' })), 'bad-request',
      'an account of another domain');
    t.equal(await conditionOf(runAdminCommand(boss, 'add-user', { accountjid: 'not a jid@', password: 'long-enough-pw' })), 'jid-malformed');
  });

  await t.test('sessions: cancel ends one, a used or foreign session id is refused', async (t) => {
    const node = `${ADMIN}#add-user`;
    const first = await commandStage(boss, node, { action: 'execute' });
    t.equal((await commandStage(boss, node, { sessionid: first.attrs.sessionid, action: 'cancel' })).attrs.status, 'canceled');
    t.equal(await conditionOf(commandStage(boss, node, { sessionid: first.attrs.sessionid, fields: {} })), 'bad-request/bad-sessionid', 'a canceled session is gone');
    const second = await commandStage(boss, node, { action: 'execute' });
    t.equal(await conditionOf(commandStage(boss, node, { sessionid: second.attrs.sessionid, action: 'prev' })), 'bad-request/bad-action');
    t.equal(await conditionOf(commandStage(boss, node, { sessionid: second.attrs.sessionid })), 'bad-request/bad-payload', 'completing without the form');
    const other = await server.login('boss', { resource: 'other' });
    t.equal(await conditionOf(commandStage(other, node, { sessionid: second.attrs.sessionid, fields: {} })), 'bad-request/bad-sessionid', 'another resource cannot take it over');
    await other.stop();
  });

  await t.test('numbers and lists of registered and online users', async (t) => {
    const registered = await runAdminCommand(boss, 'get-registered-users-num');
    t.equal(registered.attrs.status, 'completed', 'one stage');
    t.same(fieldValues(registered, 'registeredusersnum'), ['3'], 'boss, alice and newbie');
    const alice = await server.login('alice', { resource: 'phone' });
    const alice2 = await server.login('alice', { resource: 'desk' });
    t.same(fieldValues(await runAdminCommand(boss, 'get-online-users-num'), 'onlineusersnum'), ['2'], 'users, not sessions');
    t.same(fieldValues(await runAdminCommand(boss, 'get-online-users-list', { max_items: '25' }), 'onlineuserjids'), ['alice@localhost', 'boss@localhost']);
    t.same(fieldValues(await runAdminCommand(boss, 'get-online-users-list', { max_items: '1' }), 'onlineuserjids'), ['alice@localhost'], 'max_items');
    t.same(fieldValues(await runAdminCommand(boss, 'get-registered-users-list', { max_items: 'none' }), 'registereduserjids'), ['alice@localhost', 'boss@localhost', 'newbie@localhost']);
    const stats = await runAdminCommand(boss, 'user-stats', { accountjid: 'alice@localhost' });
    t.same(fieldValues(stats, 'onlineresources').sort(), ['desk', 'phone']);
    t.same(fieldValues(stats, 'ipaddresses'), ['127.0.0.1']);
    t.match(fieldValues(stats, 'sessions').join('\n'), /alice@localhost\/desk \S+ tcp 127\.0\.0\.1:\d+ \d{4}-/, 'with the node, transport, address and port');
    await Promise.all([alice.stop(), alice2.stop()]);
  });

  await t.test('end-user-session ends one resource or all of them with a stream error', async (t) => {
    const phone = await server.login('alice', { resource: 'phone' });
    const desk = await server.login('alice', { resource: 'desk' });
    const phoneClosed = streamError(phone);
    const one = await runAdminCommand(boss, 'end-user-session', { accountjids: 'alice@localhost/phone' });
    t.equal(noteOf(one), 'info: Ended 1 session(s).');
    t.equal(await phoneClosed, 'policy-violation');
    const deskClosed = streamError(desk);
    t.equal(noteOf(await runAdminCommand(boss, 'end-user-session', { accountjids: 'alice@localhost' })), 'info: Ended 1 session(s).');
    t.equal(await deskClosed, 'policy-violation');
    t.equal(noteOf(await runAdminCommand(boss, 'end-user-session', { accountjids: 'alice@localhost' })), 'info: No such session is online.');
    t.same(fieldValues(await runAdminCommand(boss, 'get-online-users-num'), 'onlineusersnum'), ['1'], 'only boss is left');
  });

  await t.test('disable-user ends the sessions and refuses logins until reenable-user', async (t) => {
    const alice = await server.login('alice', { resource: 'phone' });
    const closed = streamError(alice);
    t.equal(noteOf(await runAdminCommand(boss, 'disable-user', { accountjids: ['alice@localhost', 'ghost@localhost'] })),
      'info: Disabled alice@localhost. No such account: ghost@localhost.');
    t.equal(await closed, 'policy-violation');
    await t.rejects(server.login('alice'), /account-disabled/, 'the right password is refused with account-disabled');
    await t.rejects(server.login('alice', { password: 'wrong-password' }), /not-authorized/, 'a wrong one still says not-authorized: nothing is revealed');
    t.same(fieldValues(await runAdminCommand(boss, 'get-disabled-users-num'), 'disabledusersnum'), ['1']);
    t.equal(noteOf(await runAdminCommand(boss, 'reenable-user', { accountjids: 'alice@localhost' })), 'info: Re-enabled alice@localhost.');
    const back = await server.login('alice');
    t.ok(back.jid, 'logs in again');
    await back.stop();
  });

  await t.test('change-user-password: the old password stops working', async (t) => {
    t.equal(noteOf(await runAdminCommand(boss, 'change-user-password', { accountjid: 'alice@localhost', password: 'brand-new-password' })),
      'info: Changed the password of alice@localhost.');
    await t.rejects(server.login('alice'), /not-authorized/);
    const alice = await server.login('alice', { password: 'brand-new-password' });
    await alice.stop();
    t.equal(noteOf(await runAdminCommand(boss, 'change-user-password', { accountjid: 'ghost@localhost', password: 'brand-new-password' })),
      'error: No such account: ghost@localhost.');
  });

  await t.test('announce reaches every available session of the domain as a headline', async (t) => {
    await server.addUser('carol');
    const carol = await server.login('carol', { resource: 'web' });
    const hidden = await server.login('carol', { resource: 'hidden', presence: false });
    const seenHidden: Element[] = [];
    hidden.on('stanza', (s: Element) => seenHidden.push(s));
    const got = nextStanza(carol, (s) => s.is('message') && s.attrs.type === 'headline');
    const done = await runAdminCommand(boss, 'announce', { subject: 'Maintenance', announcement: ['The server restarts at 22:00.', 'Sorry!'] });
    t.equal(noteOf(done), 'info: Sent to 2 online session(s).', 'carol/web and boss');
    const message = await got;
    t.equal(message.attrs.from, 'localhost');
    t.equal(message.getChildText('subject'), 'Maintenance');
    t.equal(message.getChildText('body'), 'The server restarts at 22:00.\nSorry!');
    t.equal(seenHidden.filter((s) => s.is('message')).length, 0, 'a session without presence is not "online"');
    t.equal(await conditionOf(runAdminCommand(boss, 'announce', { announcement: '' })), 'bad-request', 'an empty announcement');
    await Promise.all([carol.stop(), hidden.stop()]);
  });

  await t.test('delete-user ends the sessions and removes the account', async (t) => {
    const newbie = await server.login('newbie', { password: 'newbie-password' });
    const closed = streamError(newbie);
    t.equal(noteOf(await runAdminCommand(boss, 'delete-user', { accountjids: 'newbie@localhost' })), 'info: Deleted newbie@localhost.');
    t.equal(await closed, 'policy-violation');
    t.equal(await server.node.storage.users.get('newbie@localhost'), undefined);
    await t.rejects(server.login('newbie', { password: 'newbie-password' }), /not-authorized/);
  });
});
