import { openStorage } from '../../server/storage/open-storage';
import { STORAGE_LIMITS } from '../../server/storage/limits';
import {
  UserExistsError,
  ValueTooLongError,
  type RosterItem,
  type ScramCredentials,
  type Storage,
} from '../../server/storage/types';
import { forEachDatabase, openTestStorage } from '../helpers/databases';
import { runWorkers } from './fixtures/spawn-workers';

/*
 * The conformance suite every storage backend passes (STYLE.md §7): each block runs once on SQLite
 * and once on MySQL, each on a fresh database.
 */

function credentials(seed: string): ScramCredentials {
  return {
    'SHA-1': { salt: `s1-${seed}`, iterations: 4096, storedKey: `k1-${seed}`, serverKey: `v1-${seed}` },
    'SHA-256': { salt: `s256-${seed}`, iterations: 10000, storedKey: `k256-${seed}=`, serverKey: `v256-${seed}==` },
  };
}

/** A string of `n` four-byte UTF-8 characters (astral plane), to find any 3-byte utf8 column. */
const emoji = (n: number) => '🦄'.repeat(n);

forEachDatabase('users', async (t, uri) => {
  const storage = await openTestStorage(t, uri);
  const { users } = storage;

  t.test('an account round-trips with both SCRAM credentials and a creation time', async (t) => {
    const before = Date.now();
    await users.create('alice@example.com', credentials('a'));
    const user = await users.get('alice@example.com');
    t.ok(user);
    t.equal(user!.jid, 'alice@example.com');
    t.same(user!.credentials, credentials('a'));
    t.ok(user!.createdAt instanceof Date);
    t.ok(user!.createdAt.getTime() >= before - 1000 && user!.createdAt.getTime() <= Date.now() + 1000, 'createdAt is now (UTC)');
  });

  t.test('an unknown account is undefined', async (t) => {
    t.equal(await users.get('nobody@example.com'), undefined);
  });

  t.test('creating a taken JID throws UserExistsError', async (t) => {
    await users.create('taken@example.com', credentials('1'));
    await t.rejects(users.create('taken@example.com', credentials('2')), UserExistsError);
    await t.rejects(users.create('taken@example.com', credentials('2')), { code: 'USER_EXISTS' });
    t.same((await users.get('taken@example.com'))!.credentials, credentials('1'), 'the first account is kept');
  });

  t.test('of simultaneous registrations of one JID exactly one succeeds', async (t) => {
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => users.create('race@example.com', credentials(String(i)))),
    );
    t.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    for (const r of results) if (r.status === 'rejected') t.type(r.reason, UserExistsError);
  });

  t.test('JIDs are compared exactly: case and accents make different accounts', async (t) => {
    await users.create('Bob@example.com', credentials('upper'));
    await users.create('bob@example.com', credentials('lower'));
    await users.create('böb@example.com', credentials('umlaut'));
    t.same((await users.get('Bob@example.com'))!.credentials, credentials('upper'));
    t.same((await users.get('bob@example.com'))!.credentials, credentials('lower'));
    t.same((await users.get('böb@example.com'))!.credentials, credentials('umlaut'));
    t.equal(await users.get('BOB@example.com'), undefined);
  });

  t.test('unicode JIDs round-trip', async (t) => {
    const jid = `jürgen${emoji(2)}@bücher.example`;
    await users.create(jid, credentials('u'));
    t.equal((await users.get(jid))!.jid, jid);
    t.same(await users.list('bücher.example'), [jid]);
  });

  t.test('only bare JIDs with a localpart are accounts', async (t) => {
    await t.rejects(users.create('example.com', credentials('x')), /not a bare JID/);
    await t.rejects(users.create('a@example.com/res', credentials('x')), /not a bare JID/);
    await t.rejects(users.create('@example.com', credentials('x')), /not a bare JID/);
  });

  t.test('setCredentials replaces both credentials and reports unknown accounts', async (t) => {
    await users.create('carol@example.com', credentials('old'));
    t.equal(await users.setCredentials('carol@example.com', credentials('new')), true);
    t.same((await users.get('carol@example.com'))!.credentials, credentials('new'));
    t.equal(await users.setCredentials('carol@example.com', credentials('new')), true, 'true even when nothing changed');
    t.equal(await users.setCredentials('nobody@example.com', credentials('new')), false);
    t.equal(await users.get('nobody@example.com'), undefined, 'and does not create it');
  });

  t.test('list is sorted and filters by domain', async (t) => {
    await users.create('zed@other.example', credentials('z'));
    await users.create('amy@other.example', credentials('a'));
    t.same(await users.list('other.example'), ['amy@other.example', 'zed@other.example']);
    t.same(await users.list('nowhere.example'), []);
    const all = await users.list();
    t.ok(all.includes('alice@example.com') && all.includes('zed@other.example'));
    // Binary collation: upper case sorts before lower case, on both databases.
    t.same(all.filter((j) => /^bob@/i.test(j)), ['Bob@example.com', 'bob@example.com']);
    t.same(await users.list('other.example', 1), ['amy@other.example'], 'a limit keeps the first ones');
  });

  t.test('accounts are disabled and re-enabled, and counted per domain', async (t) => {
    await users.create('d1@disabled.example', credentials('1'));
    await users.create('d2@disabled.example', credentials('2'));
    t.same(await users.count('disabled.example'), { registered: 2, disabled: 0 });
    t.same(await users.setDisabled(['d1@disabled.example', 'ghost@disabled.example'], true), ['d1@disabled.example'], 'only existing accounts');
    const disabled = await users.get('d1@disabled.example');
    t.ok(disabled?.disabledAt instanceof Date, 'get says since when');
    t.equal((await users.get('d2@disabled.example'))?.disabledAt, undefined);
    t.same(await users.count('disabled.example'), { registered: 2, disabled: 1 });
    await users.setDisabled(['d1@disabled.example'], true);
    t.equal((await users.get('d1@disabled.example'))?.disabledAt?.getTime(), disabled?.disabledAt?.getTime(), 'disabling again keeps the date');
    await users.setDisabled(['d1@disabled.example'], false);
    t.equal((await users.get('d1@disabled.example'))?.disabledAt, undefined, 're-enabled');
    t.same(await users.count('disabled.example'), { registered: 2, disabled: 0 });
    t.same(await users.count('nowhere.example'), { registered: 0, disabled: 0 });
  });

  t.test('delete removes the account and everything stored for it, and nobody else’s data', async (t) => {
    await populate(storage, 'dave@example.com');
    await populate(storage, 'erin@example.com');
    t.equal(await users.delete('dave@example.com'), true);
    t.equal(await users.get('dave@example.com'), undefined);
    t.same(await snapshot(storage, 'dave@example.com'), {
      roster: [], rosterVersioned: false, pending: [], offline: 0, privateXml: undefined, vcard: undefined, blocks: [],
      authFailures: 0,
    });
    t.same(await snapshot(storage, 'erin@example.com'), POPULATED, 'the other user is untouched');
    t.equal(await users.delete('dave@example.com'), false, 'deleting again reports false');
  });

  t.test('a deleted and re-created account never repeats an old roster version', async (t) => {
    const item: RosterItem = { jid: 'x@example.com', subscription: 'none', groups: [] };
    await users.create('fay@example.com', credentials('f'));
    await storage.roster.setItem('fay@example.com', item);
    const old = await storage.roster.getVersion('fay@example.com');
    await users.delete('fay@example.com');
    await users.create('fay@example.com', credentials('f'));
    await new Promise((r) => setTimeout(r, 5));
    await storage.roster.setItem('fay@example.com', item);
    t.not(await storage.roster.getVersion('fay@example.com'), old);
  });
});

forEachDatabase('roster', async (t, uri) => {
  const storage = await openTestStorage(t, uri);
  const { roster } = storage;
  const alice = 'alice@example.com';

  t.test('a user without a roster has no items and version "0"', async (t) => {
    t.same(await roster.getItems('nobody@example.com'), []);
    t.equal(await roster.getItem('nobody@example.com', 'x@example.com'), undefined);
    t.equal(await roster.getVersion('nobody@example.com'), '0');
    t.equal(await roster.removeItem('nobody@example.com', 'x@example.com'), false);
    t.equal(await roster.getVersion('nobody@example.com'), '0', 'removing nothing creates no version');
  });

  t.test('items round-trip exactly, optional fields included or left out', async (t) => {
    const minimal: RosterItem = { jid: 'min@example.com', subscription: 'none', groups: [] };
    const full: RosterItem = {
      jid: `full${emoji(1)}@example.com`, name: `Füll ${emoji(3)} "name" <x>`, subscription: 'both', ask: true, approved: true,
      groups: ['Friends', `Ünïcode ${emoji(1)}`, ''],
    };
    await roster.setItem(alice, minimal);
    await roster.setItem(alice, full);
    t.same(await roster.getItem(alice, minimal.jid), minimal);
    t.same(await roster.getItem(alice, full.jid), full);
  });

  t.test('setItem replaces the item for its JID', async (t) => {
    await roster.setItem(alice, { jid: 'change@example.com', name: 'Old', subscription: 'none', ask: true, groups: ['A'] });
    await roster.setItem(alice, { jid: 'change@example.com', subscription: 'to', groups: ['B', 'C'] });
    t.same(await roster.getItem(alice, 'change@example.com'), { jid: 'change@example.com', subscription: 'to', groups: ['B', 'C'] });
    t.equal((await roster.getItems(alice)).filter((i) => i.jid === 'change@example.com').length, 1);
  });

  t.test('getItems returns every item sorted by JID, for that user only', async (t) => {
    await roster.setItem('bob@example.com', { jid: 'only-bob@example.com', subscription: 'from', groups: [] });
    const jids = (await roster.getItems(alice)).map((i) => i.jid);
    t.same(jids, [...jids].sort());
    t.notOk(jids.includes('only-bob@example.com'));
    t.same((await roster.getItems('bob@example.com')).map((i) => i.jid), ['only-bob@example.com']);
  });

  t.test('every change bumps the version; a no-op remove does not', async (t) => {
    const seen = new Set([await roster.getVersion(alice)]);
    const bumped = async (what: string) => {
      const v = await roster.getVersion(alice);
      t.notOk(seen.has(v), `${what} changes the version`);
      seen.add(v);
    };
    await roster.setItem(alice, { jid: 'v@example.com', subscription: 'none', groups: [] });
    await bumped('adding');
    await roster.setItem(alice, { jid: 'v@example.com', subscription: 'none', groups: [] });
    await bumped('re-setting the same item');
    t.equal(await roster.removeItem(alice, 'v@example.com'), true);
    await bumped('removing');
    const before = await roster.getVersion(alice);
    t.equal(await roster.removeItem(alice, 'v@example.com'), false);
    t.equal(await roster.getVersion(alice), before, 'removing a missing item');
  });

  t.test('versions are per user', async (t) => {
    const bob = await roster.getVersion('bob@example.com');
    await roster.setItem(alice, { jid: 'w@example.com', subscription: 'none', groups: [] });
    t.equal(await roster.getVersion('bob@example.com'), bob);
  });

  t.test('concurrent changes each bump the version once', async (t) => {
    const user = 'busy@example.com';
    await roster.setItem(user, { jid: 'c0@example.com', subscription: 'none', groups: [] });
    const start = Number(await roster.getVersion(user));
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => roster.setItem(user, { jid: `c${i + 1}@example.com`, subscription: 'none', groups: [] })),
    );
    t.equal((await roster.getItems(user)).length, 21);
    t.equal(Number(await roster.getVersion(user)), start + 20);
  });

  t.test('pending inbound subscriptions are kept per contact, in arrival order', async (t) => {
    const user = 'pend@example.com';
    t.same(await roster.getPendingIn(user), []);
    await roster.addPendingIn(user, 'z@example.com', '<presence type="subscribe" id="1"/>');
    await new Promise((r) => setTimeout(r, 5));
    await roster.addPendingIn(user, 'a@example.com', `<presence type="subscribe"><status>${emoji(2)}</status></presence>`);
    await roster.addPendingIn(user, 'z@example.com', '<presence type="subscribe" id="2"/>');
    t.same(await roster.getPendingIn(user), [
      { contact: 'z@example.com', stanzaXml: '<presence type="subscribe" id="2"/>' },
      { contact: 'a@example.com', stanzaXml: `<presence type="subscribe"><status>${emoji(2)}</status></presence>` },
    ], 'a repeated request replaces the stanza and keeps its place');
    t.equal(await roster.removePendingIn(user, 'z@example.com'), true);
    t.equal(await roster.removePendingIn(user, 'z@example.com'), false);
    t.same((await roster.getPendingIn(user)).map((p) => p.contact), ['a@example.com']);
    t.same(await roster.getPendingIn('other@example.com'), []);
  });
});

forEachDatabase('offline messages', async (t, uri, kind) => {
  const storage = await openTestStorage(t, uri);
  const { offline } = storage;

  t.test('a queue fills up to its limit, oldest first', async (t) => {
    const user = 'alice@example.com';
    t.equal(await offline.count(user), 0);
    t.same(await offline.fetch(user), []);
    for (let i = 0; i < 3; i++) t.equal(await offline.store(user, `<message id="${i}"/>`, 3), true);
    t.equal(await offline.store(user, '<message id="3"/>', 3), false, 'the fourth is refused');
    t.equal(await offline.count(user), 3);
    const messages = await offline.fetch(user);
    t.same(messages.map((m) => m.stanzaXml), ['<message id="0"/>', '<message id="1"/>', '<message id="2"/>']);
    t.ok(messages[0].id < messages[1].id && messages[1].id < messages[2].id);
    for (const m of messages) t.ok(m.storedAt instanceof Date && Math.abs(m.storedAt.getTime() - Date.now()) < 60_000);
    t.equal(await offline.store(user, '<message/>', 5), true, 'a larger limit admits more');
  });

  t.test('a limit of 0 stores nothing', async (t) => {
    t.equal(await offline.store('zero@example.com', '<message/>', 0), false);
    t.equal(await offline.count('zero@example.com'), 0);
  });

  t.test('remove deletes only the given messages of the given user', async (t) => {
    const [a, b] = ['rm-a@example.com', 'rm-b@example.com'];
    for (let i = 0; i < 4; i++) await offline.store(a, `<message id="a${i}"/>`, 10);
    await offline.store(b, '<message id="b0"/>', 10);
    const [bMessage] = await offline.fetch(b);
    const aMessages = await offline.fetch(a);
    await offline.remove(a, [aMessages[0].id, aMessages[2].id, bMessage.id, 999_999]);
    t.same((await offline.fetch(a)).map((m) => m.stanzaXml), ['<message id="a1"/>', '<message id="a3"/>']);
    t.equal(await offline.count(b), 1, "another user's id is not removed");
    await offline.remove(a, []);
    t.equal(await offline.count(a), 2);
  });

  t.test('total counts every queue', async (t) => {
    const total = await offline.total();
    await offline.store('t1@example.com', '<message/>', 10);
    await offline.store('t2@example.com', '<message/>', 10);
    t.equal(await offline.total(), total + 2);
  });

  t.test('4-byte UTF-8 and payloads larger than 64 KiB round-trip exactly', async (t) => {
    const user = `ünï${emoji(1)}@example.com`;
    const body = `<message><body>${emoji(5)} 𝄞 naïve ✓ &amp; ${'x'.repeat(200_000)}</body></message>`;
    t.equal(await offline.store(user, body, 10), true);
    const [m] = await offline.fetch(user);
    t.equal(m.stanzaXml, body);
  });

  t.test('concurrent stores never exceed the limit', async (t) => {
    const user = 'race@example.com';
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => offline.store(user, `<message id="${i}"/>`, 10)));
    t.equal(results.filter(Boolean).length, 10);
    t.equal(await offline.count(user), 10);
  });

  // MySQL only: SQLite is opened once per process; the cross-process test below covers it.
  if (kind === 'mysql') t.test('concurrent stores through two connection pools never exceed the limit', async (t) => {
    const second = await openStorage(uri, { migrate: false });
    t.teardown(() => second.close());
    const user = 'race2@example.com';
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 ? offline : second.offline).store(user, `<message id="${i}"/>`, 15)),
    );
    t.equal(results.filter(Boolean).length, 15);
    t.equal(await offline.count(user), 15);
  });

  t.test('stores from several processes never exceed the limit', async (t) => {
    const user = 'procs@example.com';
    const results = (await runWorkers(3, [uri, 'offline-store', user, '15', '20'])) as { stored: number }[];
    t.equal(results.reduce((sum, r) => sum + r.stored, 0), 20);
    t.equal(await offline.count(user), 20);
  });
});

forEachDatabase('private XML', async (t, uri) => {
  const { privateXml } = await openTestStorage(t, uri);

  t.test('one element per user and namespace', async (t) => {
    t.equal(await privateXml.get('alice@example.com', 'storage:bookmarks'), undefined);
    await privateXml.set('alice@example.com', 'storage:bookmarks', '<storage xmlns="storage:bookmarks"/>');
    await privateXml.set('alice@example.com', 'jabber:iq:other', '<other/>');
    await privateXml.set('bob@example.com', 'storage:bookmarks', '<storage xmlns="storage:bookmarks"><bob/></storage>');
    t.equal(await privateXml.get('alice@example.com', 'storage:bookmarks'), '<storage xmlns="storage:bookmarks"/>');
    t.equal(await privateXml.get('alice@example.com', 'jabber:iq:other'), '<other/>');
    t.equal(await privateXml.get('bob@example.com', 'storage:bookmarks'), '<storage xmlns="storage:bookmarks"><bob/></storage>');
    t.equal(await privateXml.get('alice@example.com', 'STORAGE:BOOKMARKS'), undefined, 'namespaces compare exactly');
  });

  t.test('set replaces, and unicode round-trips', async (t) => {
    const xml = `<storage xmlns="storage:bookmarks"><conference name="${emoji(3)} Café"/></storage>`;
    await privateXml.set('alice@example.com', 'storage:bookmarks', xml);
    t.equal(await privateXml.get('alice@example.com', 'storage:bookmarks'), xml);
  });
});

forEachDatabase('vCards', async (t, uri) => {
  const { vcards } = await openTestStorage(t, uri);

  t.test('one vCard per user, replaced by set, large photos included', async (t) => {
    t.equal(await vcards.get('alice@example.com'), undefined);
    await vcards.set('alice@example.com', '<vCard xmlns="vcard-temp"><FN>Alice</FN></vCard>');
    t.equal(await vcards.get('alice@example.com'), '<vCard xmlns="vcard-temp"><FN>Alice</FN></vCard>');
    const big = `<vCard xmlns="vcard-temp"><FN>${emoji(4)}</FN><PHOTO><BINVAL>${'A'.repeat(300_000)}</BINVAL></PHOTO></vCard>`;
    await vcards.set('alice@example.com', big);
    t.equal(await vcards.get('alice@example.com'), big);
    t.equal(await vcards.get('bob@example.com'), undefined);
  });
});

forEachDatabase('block list', async (t, uri) => {
  const { blocks } = await openTestStorage(t, uri);
  const alice = 'alice@example.com';

  t.test('add ignores duplicates, list is sorted', async (t) => {
    t.same(await blocks.list(alice), []);
    await blocks.add(alice, ['z@example.com', 'example.net', 'z@example.com']);
    await blocks.add(alice, ['a@example.com', 'z@example.com']);
    await blocks.add(alice, []);
    t.same(await blocks.list(alice), ['a@example.com', 'example.net', 'z@example.com']);
    t.same(await blocks.list('bob@example.com'), []);
  });

  t.test('full JIDs are kept exactly, trailing spaces in resources included', async (t) => {
    // RFC 7622 §3.4: resourceparts may contain spaces; "res" and "res " are different resources.
    await blocks.add('carol@example.com', ['x@example.com/res', 'x@example.com/res ', `x@example.com/${emoji(2)}`]);
    t.same((await blocks.list('carol@example.com')).length, 3);
    await blocks.remove('carol@example.com', ['x@example.com/res ']);
    t.same((await blocks.list('carol@example.com')).sort(), [`x@example.com/${emoji(2)}`, 'x@example.com/res'].sort());
  });

  t.test('remove takes away only what is named; clear empties one list', async (t) => {
    await blocks.add('bob@example.com', ['a@example.com']);
    await blocks.remove(alice, ['example.net', 'never@example.com']);
    t.same(await blocks.list(alice), ['a@example.com', 'z@example.com']);
    await blocks.remove(alice, []);
    await blocks.clear(alice);
    t.same(await blocks.list(alice), []);
    t.same(await blocks.list('bob@example.com'), ['a@example.com']);
  });
});

forEachDatabase('auth failures', async (t, uri) => {
  const { authFailures } = await openTestStorage(t, uri);

  t.test('record counts failures within the window, per key', async (t) => {
    t.equal(await authFailures.count('alice@example.com', 60_000), 0);
    t.equal(await authFailures.record('alice@example.com', 60_000), 1);
    t.equal(await authFailures.record('alice@example.com', 60_000), 2);
    t.equal(await authFailures.record('bob@example.com', 60_000), 1);
    t.equal(await authFailures.count('alice@example.com', 60_000), 2);
    t.same(await authFailures.counts(['bob@example.com', 'nobody@example.com', 'alice@example.com', 'bob@example.com'], 60_000), [1, 0, 2, 1], 'several keys in one query, in the order asked');
    await authFailures.reset('alice@example.com');
    t.equal(await authFailures.count('alice@example.com', 60_000), 0);
    t.equal(await authFailures.count('bob@example.com', 60_000), 1, 'reset touches one key');
  });

  t.test('failures older than the window no longer count', async (t) => {
    await authFailures.record('old@example.com', 150);
    await authFailures.record('old@example.com', 150);
    await new Promise((r) => setTimeout(r, 250));
    t.equal(await authFailures.count('old@example.com', 150), 0);
    t.equal(await authFailures.record('old@example.com', 150), 1);
  });

  t.test('concurrent failures are all counted', async (t) => {
    const counts = await Promise.all(Array.from({ length: 20 }, () => authFailures.record('race@example.com', 60_000)));
    t.equal(Math.max(...counts), 20);
    t.equal(await authFailures.count('race@example.com', 60_000), 20);
  });

  t.test('failures recorded by several processes are all counted', async (t) => {
    const results = (await runWorkers(3, [uri, 'auth-record', 'procs@example.com', '10', '60000'])) as { counts: number[] }[];
    for (const r of results) t.same(r.counts, [...r.counts].sort((a, b) => a - b), 'each process sees its count grow');
    t.equal(await authFailures.count('procs@example.com', 60_000), 30);
  });
});

forEachDatabase('FAST tokens', async (t, uri) => {
  const storage = await openTestStorage(t, uri);
  const { fastTokens } = storage;
  const day = 86_400_000;
  const token = (keyHash: string, issuedAt = new Date(), lifetime = day) => ({
    mechanism: 'HT-SHA-256-NONE', keyHash, issuedAt, expiresAt: new Date(issuedAt.getTime() + lifetime),
  });

  t.test('an issued token is the client\'s next one until it is used, then it replaces the current one', async (t) => {
    await fastTokens.issue('alice@example.com', 'phone', token('a'.repeat(64)));
    let found = await fastTokens.find('alice@example.com', 'phone', new Date());
    t.same(found.map((f) => [f.slot, f.keyHash]), [['next', 'a'.repeat(64)]]);
    t.equal(found[0].mechanism, 'HT-SHA-256-NONE');
    t.ok(Math.abs(found[0].expiresAt.getTime() - found[0].issuedAt.getTime() - day) < 1000, 'times round-trip');
    await fastTokens.promote('alice@example.com', 'phone', 'a'.repeat(64));
    await fastTokens.issue('alice@example.com', 'phone', token('b'.repeat(64)));
    found = await fastTokens.find('alice@example.com', 'phone', new Date());
    t.same(found.map((f) => [f.slot, f.keyHash]), [['next', 'b'.repeat(64)], ['current', 'a'.repeat(64)]], 'the old token works until the new one is used');
    await fastTokens.promote('alice@example.com', 'phone', 'b'.repeat(64));
    found = await fastTokens.find('alice@example.com', 'phone', new Date());
    t.same(found.map((f) => [f.slot, f.keyHash]), [['current', 'b'.repeat(64)]]);
    t.same(await fastTokens.find('alice@example.com', 'laptop', new Date()), [], 'tokens are per client');
    t.same(await fastTokens.find('bob@example.com', 'phone', new Date()), [], 'and per user');
  });

  t.test('a second token issued before the first was used replaces it', async (t) => {
    await fastTokens.issue('carol@example.com', 'phone', token('c'.repeat(64)));
    await fastTokens.issue('carol@example.com', 'phone', token('d'.repeat(64)));
    t.same((await fastTokens.find('carol@example.com', 'phone', new Date())).map((f) => f.keyHash), ['d'.repeat(64)]);
    await fastTokens.promote('carol@example.com', 'phone', 'c'.repeat(64));
    t.same((await fastTokens.find('carol@example.com', 'phone', new Date())).map((f) => [f.slot, f.keyHash]), [['next', 'd'.repeat(64)]], 'promoting a replaced token changes nothing');
  });

  t.test('expired tokens are not found and are pruned', async (t) => {
    await fastTokens.issue('dave@example.com', 'phone', token('e'.repeat(64), new Date(Date.now() - 2 * day)));
    t.same(await fastTokens.find('dave@example.com', 'phone', new Date()), []);
    t.ok((await fastTokens.pruneExpired(new Date())) >= 1);
    t.same(await fastTokens.find('dave@example.com', 'phone', new Date(Date.now() - 3 * day)), [], 'the row is gone');
  });

  t.test('revoke takes one token, a client\'s, or a user\'s', async (t) => {
    for (const client of ['phone', 'laptop']) await fastTokens.issue('erin@example.com', client, token(client[0].repeat(64)));
    await fastTokens.issue('frank@example.com', 'phone', token('f'.repeat(64)));
    t.equal(await fastTokens.revoke('erin@example.com', 'phone', 'x'.repeat(64)), 0);
    t.equal(await fastTokens.revoke('erin@example.com', 'phone', 'p'.repeat(64)), 1);
    t.equal(await fastTokens.revoke('erin@example.com'), 1);
    t.same(await fastTokens.find('erin@example.com', 'laptop', new Date()), []);
    t.equal((await fastTokens.find('frank@example.com', 'phone', new Date())).length, 1, 'other users keep theirs');
  });

  t.test('a new password and a deleted account revoke the account\'s tokens', async (t) => {
    await storage.users.create('gina@example.com', credentials('gina'));
    await fastTokens.issue('gina@example.com', 'phone', token('g'.repeat(64)));
    await storage.users.setCredentials('gina@example.com', credentials('gina2'));
    t.same(await fastTokens.find('gina@example.com', 'phone', new Date()), []);
    await fastTokens.issue('gina@example.com', 'phone', token('h'.repeat(64)));
    await storage.users.delete('gina@example.com');
    t.same(await fastTokens.find('gina@example.com', 'phone', new Date()), []);
  });
});

forEachDatabase('leases of cluster chores', async (t, uri) => {
  const { leases } = await openTestStorage(t, uri);

  t.test('one holder at a time; it renews; another takes over once it expired or was released', async (t) => {
    t.equal(await leases.acquire('job', 'node1', 60_000), true);
    t.equal(await leases.acquire('job', 'node2', 60_000), false, 'held by node1');
    t.equal(await leases.acquire('job', 'node1', 60_000), true, 'node1 renews');
    t.equal(await leases.holder('job'), 'node1');
    t.equal(await leases.acquire('short', 'node1', 1), true);
    await eventuallyTrue(async () => (await leases.holder('short')) === undefined);
    t.equal(await leases.acquire('short', 'node2', 60_000), true, 'an expired lease goes to whoever asks');
    await leases.release('job', 'node1');
    t.equal(await leases.acquire('job', 'node3', 60_000), true, 'a released lease too');
  });

  t.test('of many nodes asking at once, exactly one gets it', async (t) => {
    const got = await Promise.all(Array.from({ length: 8 }, (_, i) => leases.acquire('race', `node${i}`, 60_000)));
    t.equal(got.filter(Boolean).length, 1);
  });
});

async function eventuallyTrue(check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

forEachDatabase('key length limits', async (t, uri) => {
  const storage = await openTestStorage(t, uri);
  // The longest JIDs allowed, in 4-byte characters: the worst case for MySQL's 3072-byte keys.
  const longest = (suffix: string) => emoji(STORAGE_LIMITS.jid - suffix.length) + suffix;
  const user = longest('@a.example');
  const contact = longest('@b.example');

  t.test('JIDs of the maximum length are stored in every keyed table', async (t) => {
    await storage.users.create(user, credentials('long'));
    t.equal((await storage.users.get(user))!.jid, user);
    await storage.roster.setItem(user, { jid: contact, subscription: 'both', groups: [] });
    t.equal((await storage.roster.getItems(user))[0].jid, contact);
    await storage.roster.addPendingIn(user, contact, '<presence/>');
    await storage.blocks.add(user, [contact]);
    t.same(await storage.blocks.list(user), [contact]);
    await storage.privateXml.set(user, longest(':ns'), '<x/>');
    t.equal(await storage.privateXml.get(user, longest(':ns')), '<x/>');
    t.equal(await storage.offline.store(user, '<message/>', 1), true);
    await storage.vcards.set(user, '<vCard/>');
    t.equal(await storage.authFailures.record(user, 60_000), 1);
    t.equal(await storage.users.delete(user), true);
  });

  t.test('one character more is refused the same way on every database', async (t) => {
    const tooLong = emoji(STORAGE_LIMITS.jid - 7) + '@example'; // 385 characters
    await t.rejects(storage.users.create(tooLong, credentials('x')), ValueTooLongError);
    await t.rejects(storage.roster.setItem('a@example.com', { jid: tooLong, subscription: 'none', groups: [] }), {
      code: 'VALUE_TOO_LONG',
    });
    await t.rejects(storage.blocks.add('a@example.com', ['ok@example.com', tooLong]), ValueTooLongError);
    t.same(await storage.blocks.list('a@example.com'), [], 'nothing of a refused batch is stored');
    await t.rejects(storage.offline.store(tooLong, '<message/>', 10), ValueTooLongError);
    await t.rejects(storage.privateXml.set('a@example.com', 'x'.repeat(STORAGE_LIMITS.namespace + 1), '<x/>'), ValueTooLongError);
  });
});

/** Gives `user` something in every store. */
async function populate(storage: Storage, user: string): Promise<void> {
  await storage.users.create(user, credentials(user));
  await storage.roster.setItem(user, { jid: 'friend@example.com', subscription: 'both', groups: ['G'] });
  await storage.roster.addPendingIn(user, 'stranger@example.com', '<presence type="subscribe"/>');
  await storage.offline.store(user, '<message/>', 10);
  await storage.privateXml.set(user, 'storage:bookmarks', '<storage/>');
  await storage.vcards.set(user, '<vCard/>');
  await storage.blocks.add(user, ['spam@example.com']);
  await storage.authFailures.record(user, 60_000);
}

/** What populate() leaves, as snapshot() reports it. */
const POPULATED = {
  roster: [{ jid: 'friend@example.com', subscription: 'both', groups: ['G'] }],
  rosterVersioned: true,
  pending: [{ contact: 'stranger@example.com', stanzaXml: '<presence type="subscribe"/>' }],
  offline: 1, privateXml: '<storage/>', vcard: '<vCard/>', blocks: ['spam@example.com'], authFailures: 1,
};

async function snapshot(storage: Storage, user: string) {
  return {
    roster: await storage.roster.getItems(user),
    rosterVersioned: (await storage.roster.getVersion(user)) !== '0',
    pending: await storage.roster.getPendingIn(user),
    offline: await storage.offline.count(user),
    privateXml: await storage.privateXml.get(user, 'storage:bookmarks'),
    vcard: await storage.vcards.get(user),
    blocks: await storage.blocks.list(user),
    authFailures: await storage.authFailures.count(user, 60_000),
  };
}
