import type { Element } from 'ltx';
import { eventually } from '../helpers/cluster';
import { forEachDatabase } from '../helpers/databases';
import { seedItem } from '../helpers/im';
import { MAM, query } from '../helpers/mam';
import { collect, startTestServer, xml } from '../helpers/server';

const WAIT_MS = 20_000;

const chat = (to: string, body: string, ...extra: Element[]) => xml('message', { to, type: 'chat' }, xml('body', {}, body), ...extra);
const errorOf = async (promise: Promise<unknown>) => promise.then(() => 'no error', (err: { condition?: string }) => String(err.condition ?? err));

forEachDatabase('XEP-0313 message archives', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri });
  for (const user of ['alice', 'bob', 'carol', 'dave', 'erin']) await server.addUser(user);
  const alice = await server.login('alice', { resource: 'desk' });
  const bob = await server.login('bob', { resource: 'phone' });
  const carol = await server.login('carol', { resource: 'web' });
  const archived = (user: string) => server.node.storage.knex('archive_messages').where({ user }).count({ n: '*' }).first().then((r) => Number((r as { n: number }).n));

  await t.test('the account advertises MAM v2 with the extended features', async (t) => {
    const info = await alice.iqCaller.request(xml('iq', { type: 'get', to: 'alice@localhost' }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })));
    const features = info.getChild('query')!.getChildren('feature').map((f: Element) => f.attrs.var);
    t.ok(features.includes(MAM));
    t.ok(features.includes(`${MAM}#extended`));
    const form = await alice.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: MAM })));
    const vars = form.getChild('query', MAM)!.getChild('x', 'jabber:x:data')!.getChildren('field').map((f: Element) => f.attrs.var);
    t.same(vars, ['FORM_TYPE', 'with', 'start', 'end', 'before-id', 'after-id', 'ids']);
    const ids = form.getChild('query', MAM)!.getChild('x', 'jabber:x:data')!.getChildren('field').find((f: Element) => f.attrs.var === 'ids')!;
    t.ok(ids.getChild('validate', 'http://jabber.org/protocol/xdata-validate')?.getChild('open'), 'ids: an open list (XEP-0122), since the form cannot list every id');
  });

  let received: Element[] = [];
  await t.test('a conversation is in both archives, once, in order; the recipient\'s copy carries its archive id', async (t) => {
    received = collect(bob);
    const aliceGot = collect(alice);
    const arrived = (seen: Element[], body: string) => eventually(`${body} arrived`, () => seen.some((s) => s.getChildText('body') === body), WAIT_MS);
    // Turn by turn, as people chat: each message is routed before the answer to it.
    for (let i = 1; i <= 5; i++) {
      await alice.send(chat('bob@localhost/phone', `a${i}`));
      await arrived(received, `a${i}`);
      await bob.send(chat('alice@localhost/desk', `b${i}`));
      await arrived(aliceGot, `b${i}`);
    }
    await eventually('both archives written', async () => (await archived('alice@localhost')) === 10 && (await archived('bob@localhost')) === 10, WAIT_MS);
    const page = await query(alice);
    t.same(page.messages.map((m) => m.body), ['a1', 'b1', 'a2', 'b2', 'a3', 'b3', 'a4', 'b4', 'a5', 'b5']);
    t.ok(page.complete);
    t.equal(page.count, 10);
    t.equal(page.messages[0].from, 'alice@localhost/desk', 'the archived stanza has its addresses');
    t.equal(page.messages[1].from, 'bob@localhost/phone');
    t.ok(page.messages.every((m) => /^\d{4}-\d\d-\d\dT.*Z$/.test(m.stamp)), 'each with its delay stamp');
    const bobs = await query(bob);
    const stanzaIds = received.filter((s) => s.is('message') && s.getChild('body')).map((s) => s.getChild('stanza-id', 'urn:xmpp:sid:0'));
    t.ok(stanzaIds.every((sid) => sid?.attrs.by === 'bob@localhost'), 'XEP-0359 stanza-id by the recipient\'s archive');
    t.same(stanzaIds.map((sid) => sid!.attrs.id), bobs.messages.filter((m) => m.from.startsWith('alice')).map((m) => m.id), 'the same ids the archive pages by');
  });

  await t.test('RSM paging forwards with <after/>, backwards with <before/>, and the extended before-id/after-id', async (t) => {
    const pages: string[][] = [];
    let after: string | undefined;
    for (;;) {
      const page = await query(alice, { rsm: [xml('max', {}, '4'), ...(after ? [xml('after', {}, after)] : [])] });
      pages.push(page.messages.map((m) => m.body!));
      t.equal(page.count, 10, 'count is the whole result');
      after = page.last;
      if (page.complete) break;
    }
    t.same(pages, [['a1', 'b1', 'a2', 'b2'], ['a3', 'b3', 'a4', 'b4'], ['a5', 'b5']]);
    const last = await query(alice, { rsm: [xml('max', {}, '3'), xml('before')] });
    t.same(last.messages.map((m) => m.body), ['b4', 'a5', 'b5'], 'an empty <before/> is the newest page');
    t.notOk(last.complete);
    const earlier = await query(alice, { rsm: [xml('max', {}, '3'), xml('before', {}, last.first!)] });
    t.same(earlier.messages.map((m) => m.body), ['a3', 'b3', 'a4']);
    const all = (await query(alice)).messages;
    const between = await query(alice, { fields: { 'after-id': all[1].id, 'before-id': all[5].id } });
    t.same(between.messages.map((m) => m.body), ['a2', 'b2', 'a3']);
    const byIds = await query(alice, { fields: { ids: [all[9].id, all[0].id] } });
    t.same(byIds.messages.map((m) => m.body), ['a1', 'b5'], 'ids, in archive order');
    const flipped = await query(alice, { rsm: [xml('max', {}, '2'), xml('before')], flip: true });
    t.same(flipped.messages.map((m) => m.body), ['b5', 'a5'], 'flip-page: newest first');
    t.equal(await errorOf(query(alice, { rsm: [xml('after', {}, 'no-such-id')] })), 'item-not-found');
    t.equal(await errorOf(query(alice, { rsm: [xml('max', {}, 'many')] })), 'bad-request');
  });

  await t.test('after-id and before-id choose the result set, which RSM counts and pages through', async (t) => {
    const all = (await query(alice)).messages;
    const bodies = (page: { messages: { body: string | null }[] }) => page.messages.map((m) => m.body);
    // A client catching up from the last message it has: every page after the first goes on from
    // the last, and the count is what is left to fetch, not the whole archive.
    const pages: (string | null)[][] = [];
    let after: string | undefined;
    for (let i = 0; i < 10; i++) {
      const page = await query(alice, { fields: { 'after-id': all[3].id }, rsm: [xml('max', {}, '2'), ...(after ? [xml('after', {}, after)] : [])] });
      pages.push(bodies(page));
      t.equal(page.count, 6, 'count: the messages after the id');
      after = page.last;
      if (page.complete) break;
    }
    t.same(pages, [['a3', 'b3'], ['a4', 'b4'], ['a5', 'b5']]);
    // before-id does not page backwards: the oldest of the set come first, and <before/> pages from its end.
    const older = await query(alice, { fields: { 'before-id': all[5].id }, rsm: [xml('max', {}, '2')] });
    t.same(bodies(older), ['a1', 'b1']);
    t.equal(older.count, 5);
    t.notOk(older.complete);
    const newestOlder = await query(alice, { fields: { 'before-id': all[5].id }, rsm: [xml('max', {}, '2'), xml('before')] });
    t.same(bodies(newestOlder), ['b2', 'a3']);
    const previous = await query(alice, { fields: { 'before-id': all[5].id }, rsm: [xml('max', {}, '2'), xml('before', {}, newestOlder.first!)] });
    t.same(bodies(previous), ['b1', 'a2'], 'and on backwards from there');
    const between = await query(alice, { fields: { 'after-id': all[1].id, 'before-id': all[5].id } });
    t.equal(between.count, 3);
    // With a date as well: all ten are within a minute, so the count reads their timestamps.
    const dated = await query(alice, { fields: { start: all[0].stamp, 'after-id': all[7].id } });
    t.same(bodies(dated), ['a5', 'b5']);
    t.equal(dated.count, 2);
    const datedEnd = await query(alice, { fields: { end: all[9].stamp, 'before-id': all[2].id } });
    t.same(bodies(datedEnd), ['a1', 'b1']);
    t.equal(datedEnd.count, 2);
    t.equal(await errorOf(query(alice, { fields: { 'before-id': 'no-such-id' } })), 'item-not-found');
    t.equal(await errorOf(query(alice, { fields: { 'after-id': all[1].id }, rsm: [xml('after', {}, 'no-such-id')] })), 'item-not-found');
    t.equal(await errorOf(query(alice, { fields: { 'after-id': 'no-such-id', start: '2000-01-01T00:00:00Z', end: '2000-01-02T00:00:00Z' } })), 'item-not-found', 'an unknown id is an error even when the dates match nothing');
  });

  await t.test('dates and ids together: the count is of the rows both let through', async (t) => {
    // Twenty messages five minutes apart, so that dates become id bounds with rows in doubt at
    // their edges (the store reads the timestamps of those near a date, within ten minutes).
    await server.addUser('frank');
    const t0 = Date.parse('2020-01-01T00:00:00Z');
    const rows = Array.from({ length: 20 }, (_, i) => ({
      user: 'frank@localhost', stanzaId: `f${i}`, withJid: 'alice@localhost', direction: 'in' as const, at: new Date(t0 + i * 300_000),
      stanza: `<message xmlns="jabber:client" from="alice@localhost/desk" to="frank@localhost" type="chat"><body>m${i}</body></message>`,
    }));
    await server.node.storage.archive.append(rows);
    const frank = await server.login('frank', { resource: 'x' });
    const at = (i: number) => new Date(t0 + i * 300_000).toISOString();
    const check = async (fields: Record<string, string>, expected: string[]) => {
      const page = await query(frank, { fields });
      t.same(page.messages.map((m) => m.body), expected, JSON.stringify(fields));
      t.equal(page.count, expected.length, `count of ${JSON.stringify(fields)}`);
    };
    await check({ start: at(10), 'before-id': 'f10' }, []);
    await check({ start: at(10), 'before-id': 'f12' }, ['m10', 'm11']);
    await check({ end: at(10), 'after-id': 'f9' }, ['m10']);
    await check({ end: at(10), 'after-id': 'f6' }, ['m7', 'm8', 'm9', 'm10']);
    await check({ start: at(3), end: at(16), 'after-id': 'f4', 'before-id': 'f15' }, ['m5', 'm6', 'm7', 'm8', 'm9', 'm10', 'm11', 'm12', 'm13', 'm14']);
    await check({ start: at(12), end: at(16), 'after-id': 'f1', 'before-id': 'f14' }, ['m12', 'm13']);
    await frank.stop();
  });

  await t.test('with, start and end filter the archive', async (t) => {
    await carol.send(chat('alice@localhost/desk', 'from carol'));
    await eventually('archived', async () => (await archived('alice@localhost')) === 11, WAIT_MS);
    const withBob = await query(alice, { fields: { with: 'bob@localhost' } });
    t.equal(withBob.count, 10);
    t.notOk(withBob.messages.some((m) => m.body === 'from carol'));
    t.same((await query(alice, { fields: { with: 'carol@localhost' } })).messages.map((m) => m.body), ['from carol']);
    t.same((await query(alice, { fields: { with: 'bob@localhost/elsewhere' } })).count, 0, 'a full JID matches that resource only');
    const all = (await query(alice)).messages;
    const since = await query(alice, { fields: { start: all[10].stamp } });
    t.same(since.messages.map((m) => m.body), ['from carol']);
    const until = await query(alice, { fields: { end: all[0].stamp } });
    t.ok(until.messages.length >= 1 && until.messages[0].body === 'a1');
    t.equal(await errorOf(query(alice, { fields: { start: 'yesterday' } })), 'bad-request');
    // A filter the archive does not have is refused, not ignored: the client would take every message for a match.
    t.equal(await errorOf(query(alice, { fields: { '{urn:example:xmpp}free-text-search': 'Romeo' } })), 'feature-not-implemented');
    t.equal(await errorOf(query(alice, { fields: { with: 'bob@localhost', 'include-groupchat': 'false' } })), 'feature-not-implemented', 'include-groupchat, which the archive does not advertise');
  });

  await t.test('metadata names the first and last message', async (t) => {
    const reply = await alice.iqCaller.request(xml('iq', { type: 'get' }, xml('metadata', { xmlns: MAM })));
    const metadata = reply.getChild('metadata', MAM)!;
    const all = (await query(alice)).messages;
    t.equal(metadata.getChild('start')!.attrs.id, all[0].id);
    t.equal(metadata.getChild('end')!.attrs.id, all[all.length - 1].id);
    const dave = await server.login('dave', { resource: 'x' });
    const empty = await dave.iqCaller.request(xml('iq', { type: 'get' }, xml('metadata', { xmlns: MAM })));
    t.equal(empty.getChild('metadata', MAM)!.children.length, 0, 'an empty archive: empty metadata');
    await dave.stop();
  });

  await t.test('what is not archived: no-store hints, headlines, and forged stanza ids are stripped', async (t) => {
    // A MAM request makes the node write what it has batched: the count starts from everything so far.
    await bob.iqCaller.request(xml('iq', { type: 'get' }, xml('metadata', { xmlns: MAM })));
    const before = await archived('bob@localhost');
    await alice.send(chat('bob@localhost/phone', 'secret', xml('no-store', { xmlns: 'urn:xmpp:hints' })));
    await alice.send(xml('message', { to: 'bob@localhost/phone', type: 'headline' }, xml('body', {}, 'news')));
    await alice.send(chat('bob@localhost/phone', 'forged', xml('stanza-id', { xmlns: 'urn:xmpp:sid:0', by: 'bob@localhost', id: 'fake' })));
    await eventually('the forged one arrived', () => received.some((s) => s.getChildText('body') === 'forged'), WAIT_MS);
    const forged = received.find((s) => s.getChildText('body') === 'forged')!;
    const ids = forged.getChildren('stanza-id', 'urn:xmpp:sid:0');
    t.equal(ids.length, 1, 'one stanza id by bob\'s archive');
    t.not(ids[0].attrs.id, 'fake', 'the server\'s, not the sender\'s');
    t.notOk(received.find((s) => s.getChildText('body') === 'secret')!.getChild('stanza-id', 'urn:xmpp:sid:0'), 'no id for what was not archived');
    await eventually('only the forged one archived', async () => (await archived('bob@localhost')) === before + 1, WAIT_MS);
    t.equal((await query(bob, { fields: { ids: [ids[0].attrs.id] } })).messages[0].body, 'forged');
  });

  await t.test('a message to an offline user is archived for them and arrives with the same id', async (t) => {
    await alice.send(chat('dave@localhost', 'while you were away'));
    await eventually('in dave\'s archive', async () => (await archived('dave@localhost')) === 1, WAIT_MS);
    const dave = await server.login('dave', { resource: 'later', presence: false });
    const seen = collect(dave);
    await dave.send(xml('presence'));
    await eventually('delivered from offline storage', () => seen.some((s) => s.getChildText('body') === 'while you were away'), WAIT_MS);
    const id = seen.find((s) => s.getChildText('body') === 'while you were away')!.getChild('stanza-id', 'urn:xmpp:sid:0')!.attrs.id;
    t.same((await query(dave)).messages.map((m) => m.id), [id]);
  });

  await t.test('preferences: never for a contact keeps their messages out; roster and always', async (t) => {
    const prefs = await carol.iqCaller.request(xml('iq', { type: 'get' }, xml('prefs', { xmlns: MAM })));
    t.equal(prefs.getChild('prefs', MAM)!.attrs.default, 'always', 'archiving is on by default');
    const set = await carol.iqCaller.request(xml('iq', { type: 'set' }, xml('prefs', { xmlns: MAM, default: 'always' }, xml('always'), xml('never', {}, xml('jid', {}, 'bob@localhost')))));
    t.same(set.getChild('prefs', MAM)!.getChild('never')!.getChildren('jid').map((j: Element) => j.getText()), ['bob@localhost']);
    await carol.iqCaller.request(xml('iq', { type: 'get' }, xml('metadata', { xmlns: MAM })));
    const before = await archived('carol@localhost');
    await bob.send(chat('carol@localhost/web', 'not for the record'));
    await alice.send(chat('carol@localhost/web', 'for the record'));
    await eventually('alice\'s archived', async () => (await archived('carol@localhost')) === before + 1, WAIT_MS);
    t.same((await query(carol, { fields: { with: 'alice@localhost' } })).messages.map((m) => m.body), ['from carol', 'for the record'], 'her own message to alice, and alice\'s answer');
    t.equal((await query(carol, { fields: { with: 'bob@localhost' } })).count, 0);
    t.equal(await errorOf(carol.iqCaller.request(xml('iq', { type: 'set' }, xml('prefs', { xmlns: MAM, default: 'sometimes' })))), 'bad-request');
  });

  await t.test('preferences: the roster default keeps contacts only; always and never lists win over the default', async (t) => {
    await seedItem(server, 'erin', 'alice', 'both');
    const erin = await server.login('erin', { resource: 'tab' });
    const setPrefs = (mode: string, always: string[], never: string[]) => erin.iqCaller.request(xml('iq', { type: 'set' },
      xml('prefs', { xmlns: MAM, default: mode }, xml('always', {}, ...always.map((j) => xml('jid', {}, j))), xml('never', {}, ...never.map((j) => xml('jid', {}, j))))));
    const bodies = async () => (await query(erin, { rsm: [xml('max', {}, '50')] })).messages.map((m) => m.body);
    // Rows are written in the order they were recorded: once the last one is in, the others are decided.
    const settled = (body: string) => eventually(`"${body}" archived`, async () => (await bodies()).includes(body), WAIT_MS);

    const erinGot = collect(erin);
    const bobGot = collect(bob);
    // Each message is routed (and recorded) before the next is sent.
    const deliver = async (from: typeof alice, to: string, body: string) => {
      await from.send(chat(to, body));
      await eventually(`"${body}" delivered`, () => [...erinGot, ...bobGot].some((s) => s.getChildText('body') === body), WAIT_MS);
    };

    await setPrefs('roster', ['carol@localhost'], []);
    // Erin is online here, so the node keeps her roster in memory: it is read once (if nothing read it
    // since she logged in), not for each of the three messages below checked against it (r1, r2, r3).
    let rosterQueries = 0;
    const countRosterQueries = (q: { sql: string }) => void (/roster_items/.test(q.sql) && rosterQueries++);
    server.node.storage.knex.on('query', countRosterQueries);
    await deliver(alice, 'erin@localhost/tab', 'r1 from a contact');
    await deliver(bob, 'erin@localhost/tab', 'r2 from a stranger');
    await deliver(erin, 'bob@localhost/phone', 'r3 to a stranger');
    await deliver(carol, 'erin@localhost/tab', 'r4 always');
    await settled('r4 always');
    server.node.storage.knex.off('query', countRosterQueries);
    t.ok(rosterQueries <= 1, `the roster of a user online here is read once at most, not per message (${rosterQueries} queries)`);
    t.same(await bodies(), ['r1 from a contact', 'r4 always'], 'roster: the contact and the always-listed, not the stranger either way');
    t.ok((await query(bob, { fields: { with: 'erin@localhost' } })).messages.some((m) => m.body === 'r3 to a stranger'), 'the stranger\'s own archive keeps it (his default)');

    await setPrefs('never', ['alice@localhost'], []);
    await deliver(carol, 'erin@localhost/tab', 'n1 not listed');
    await deliver(alice, 'erin@localhost/tab', 'n2 always-listed');
    await settled('n2 always-listed');
    await setPrefs('always', [], ['alice@localhost']);
    await deliver(alice, 'erin@localhost/tab', 'a1 never-listed');
    await deliver(carol, 'erin@localhost/tab', 'a2 by default');
    await settled('a2 by default');
    t.same(await bodies(), ['r1 from a contact', 'r4 always', 'n2 always-listed', 'a2 by default']);
    // Only what the archive keeps gets an id from it: a client paging from any id it got finds it.
    const ids = new Map(erinGot.filter((s) => s.getChildText('body')).map((s) => [s.getChildText('body')!, s.getChild('stanza-id', 'urn:xmpp:sid:0')?.attrs]));
    t.same([...ids].filter(([, sid]) => sid !== undefined).map(([body]) => body), ['r1 from a contact', 'r4 always', 'n2 always-listed', 'a2 by default'],
      'the messages her preferences leave out came without a stanza id');
    for (const [body, sid] of ids) {
      if (!sid) continue;
      t.equal(sid.by, 'erin@localhost');
      t.equal(await errorOf(query(erin, { fields: { 'after-id': sid.id } })), 'no error', `paging after the id of "${body}" works`);
    }
    await erin.stop();
  });

  await t.test('an archive is its owner\'s only, and goes with the account', async (t) => {
    t.equal(await errorOf(query(bob, { to: 'alice@localhost' })), 'forbidden');
    await server.node.storage.users.delete('dave@localhost');
    t.equal(await archived('dave@localhost'), 0);
  });
});
