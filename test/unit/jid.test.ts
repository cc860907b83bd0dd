import t from 'tap';
import { JID, JIDError, makeJID, parseJID, prepareLocalpart, tryParseJID } from '../../server/jid';

t.test('RFC 7622 §3.5 examples of valid JIDs parse into their parts', async (t) => {
  const cases: [string, string, string, string][] = [
    ['juliet@example.com', 'juliet', 'example.com', ''],
    ['juliet@example.com/foo', 'juliet', 'example.com', 'foo'],
    ['juliet@example.com/foo bar', 'juliet', 'example.com', 'foo bar'],
    ['juliet@example.com/foo@bar', 'juliet', 'example.com', 'foo@bar'],
    ['foo\\20bar@example.com', 'foo\\20bar', 'example.com', ''],
    ['fussball@example.com', 'fussball', 'example.com', ''],
    ['fußball@example.com', 'fußball', 'example.com', ''],
    ['π@example.com', 'π', 'example.com', ''],
    ['Σ@example.com/foo', 'σ', 'example.com', 'foo'],
    ['σ@example.com/foo', 'σ', 'example.com', 'foo'],
    ['ς@example.com/foo', 'ς', 'example.com', 'foo'],
    ['king@example.com/♚', 'king', 'example.com', '♚'],
    ['example.com', '', 'example.com', ''],
    ['example.com/foobar', '', 'example.com', 'foobar'],
    ['a.example.com/b@example.net', '', 'a.example.com', 'b@example.net'],
  ];
  for (const [input, local, domain, resource] of cases) {
    const jid = parseJID(input);
    t.same([jid.local, jid.domain, jid.resource], [local, domain, resource], input);
  }
  t.not(parseJID('fußball@example.com').toString(), parseJID('fussball@example.com').toString(),
    'ß is not folded to ss');
  t.ok(parseJID('Σ@example.com/foo').equals(parseJID('σ@example.com/foo')), 'capital sigma folds to σ');
  t.notOk(parseJID('ς@example.com/foo').equals(parseJID('σ@example.com/foo')), 'final sigma stays distinct');
});

t.test('RFC 7622 §3.6 examples of invalid JIDs are rejected as JID_MALFORMED', async (t) => {
  const invalid = [
    '"juliet"@example.com', // quotation marks
    'foo bar@example.com', // space in localpart
    'juliet@example.com/', // empty resourcepart
    '@example.com/', // empty localpart
    'henry\u2163@example.com', // ROMAN NUMERAL FOUR has a compatibility decomposition
    '♚@example.com', // symbol in localpart
    'juliet@', // empty domainpart
    '/foobar', // empty domainpart
  ];
  for (const input of invalid) {
    t.throws(() => parseJID(input), { code: 'JID_MALFORMED' }, input);
    t.equal(tryParseJID(input), undefined, input);
  }
  const err = (() => { try { parseJID('juliet@'); } catch (e) { return e; } })();
  t.ok(err instanceof JIDError);
});

t.test('other malformed JIDs', async (t) => {
  const invalid = [
    '', '@', '/', 'user@', '@example.com', 'example.com/', 'user@@example.com',
    'a&b@example.com', "a'b@example.com", 'a:b@example.com', 'a<b@example.com', 'a>b@example.com',
    'user@exa mple.com', 'user@-example.com', 'user@example-.com', 'user@exa_mple.com',
    'user@example..com', 'user@.example.com', 'user@example.com..', 'user@ab--cd.example',
    'user@xn--abc.example', 'user@1.2', 'user@300.1.1.1', 'user@[1.2.3.4]', 'user@[::1',
    'user@☃.net', 'user@example.com/\u0007', 'user@example.com/a\u200Bb', 'us\u00ADer@example.com',
    'user@example.com/\uFDD0', 'user@example.com/\u0378', '\uFF02juliet\uFF02@example.com',
  ];
  for (const input of invalid) t.equal(tryParseJID(input), undefined, JSON.stringify(input));
});

t.test('localpart is case-folded and width-mapped; resourcepart keeps case and width', async (t) => {
  t.equal(parseJID('JULIET@Example.COM/Balcony').toString(), 'juliet@example.com/Balcony');
  t.equal(parseJID('\uFF2A\uFF55\uFF4C\uFF49\uFF45\uFF54@example.com').local, 'juliet', 'fullwidth maps to ASCII');
  t.equal(parseJID('\uFF76\uFF9E@example.com').local, '\u30AC', 'halfwidth katakana + voiced mark compose to ガ');
  t.equal(parseJID('juliet@example.com/\uFF26\uFF4F\uFF4F').resource, '\uFF26\uFF4F\uFF4F', 'no width mapping in resource');
  t.equal(parseJID('juliet@example.com/a\u00A0b').resource, 'a b', 'non-ASCII space maps to U+0020');
  t.equal(parseJID('cafe\u0301@example.com').local, 'caf\u00E9', 'NFC in localpart');
  t.equal(parseJID('juliet@example.com/cafe\u0301').resource, 'caf\u00E9', 'NFC in resource');
  t.equal(prepareLocalpart('ÉLODIE'), 'élodie');
});

t.test('domainparts: IDN kept in Unicode, A-labels converted, IP literals, trailing dot', async (t) => {
  t.equal(parseJID('user@bücher.example').domain, 'bücher.example');
  t.equal(parseJID('user@xn--bcher-kva.example').domain, 'bücher.example', 'A-label becomes U-label');
  t.equal(parseJID('user@BÜCHER.Example').domain, 'bücher.example');
  t.ok(parseJID('user@xn--bcher-kva.example').equals(parseJID('user@bücher.example')));
  t.equal(parseJID('user@例え\u3002テスト').domain, '例え.テスト', 'ideographic full stop separates labels');
  t.equal(parseJID('user@\uFF45xample.com').domain, 'example.com', 'fullwidth letters are mapped');
  t.equal(parseJID('user@example.com.').domain, 'example.com', 'one trailing dot is stripped');
  t.equal(parseJID('user@127.0.0.1/r').domain, '127.0.0.1');
  t.equal(parseJID('user@[2001:DB8::1]').domain, '[2001:db8::1]');
  t.equal(parseJID('[::1]').domain, '[::1]');
  t.ok(parseJID('example.com').isDomain());
  t.notOk(parseJID('user@example.com').isDomain());
  t.notOk(parseJID('example.com/r').isDomain());
});

t.test('length limits: 1023 octets per part after preparation, 63 per domain label', async (t) => {
  const label = 'a'.repeat(63);
  const domain1023 = `${label}.`.repeat(16).slice(0, 1023).replace(/\.$/, 'b');
  t.equal(Buffer.byteLength(domain1023), 1023);
  t.ok(tryParseJID(`${'u'.repeat(1023)}@example.com`), 'localpart of 1023 octets');
  t.notOk(tryParseJID(`${'u'.repeat(1024)}@example.com`), 'localpart of 1024 octets');
  t.ok(tryParseJID(`${'é'.repeat(511)}x@example.com`), '1023 octets in two-octet characters');
  t.notOk(tryParseJID(`${'é'.repeat(512)}@example.com`), '1024 octets in two-octet characters');
  t.ok(tryParseJID(`example.com/${'r'.repeat(1023)}`), 'resourcepart of 1023 octets');
  t.notOk(tryParseJID(`example.com/${'r'.repeat(1024)}`), 'resourcepart of 1024 octets');
  t.notOk(tryParseJID(`example.com/${'€'.repeat(342)}`), '1026 octets in three-octet characters');
  t.ok(tryParseJID(domain1023), 'domainpart of 1023 octets');
  t.notOk(tryParseJID(`${domain1023}c`), 'domainpart of 1024 octets');
  t.notOk(tryParseJID(`user@${'a'.repeat(64)}.com`), 'label of 64 octets');
  t.notOk(tryParseJID(`user@${'ü'.repeat(60)}.com`), 'U-label whose A-label exceeds 63 octets');
  t.notOk(tryParseJID('x'.repeat(100_000)), 'huge input');
});

t.test('JID objects: bare, toString, equals, makeJID', async (t) => {
  const full = parseJID('Juliet@Example.com/Balcony');
  t.equal(full.toString(), 'juliet@example.com/Balcony');
  t.equal(full.bareString(), 'juliet@example.com');
  t.equal(full.bare(), full.bare(), 'bare() is cached');
  t.ok(full.bare().isBare());
  t.notOk(full.isBare());
  t.equal(full.bare().bare(), full.bare(), 'bare of bare is itself');
  t.ok(full.equals(parseJID('juliet@example.com/Balcony')));
  t.notOk(full.equals(parseJID('juliet@example.com/balcony')), 'resources are case-sensitive');
  t.notOk(full.equals(undefined));
  t.equal(JSON.stringify({ to: full }), '{"to":"juliet@example.com/Balcony"}');
  t.equal(full.withResource('Orchard').toString(), 'juliet@example.com/Orchard');

  const made = makeJID('JULIET', 'EXAMPLE.com', 'Balcony');
  t.ok(made.equals(full));
  t.ok(made instanceof JID);
  t.equal(makeJID('', 'example.com').toString(), 'example.com');
  t.throws(() => makeJID('a@b', 'example.com'), { code: 'JID_MALFORMED' });
  t.throws(() => makeJID('juliet', ''), { code: 'JID_MALFORMED' });
});

t.test('the parse cache returns correct, prepared results', async (t) => {
  const a = parseJID('Romeo@Example.net/Home');
  const b = parseJID('Romeo@Example.net/Home');
  t.equal(a, b, 'same input gives the cached object');
  t.equal(b.toString(), 'romeo@example.net/Home');
  t.not(parseJID('romeo@example.net/home').toString(), b.toString(), 'different input, different JID');
  // Fill past the cache bound: results stay correct after it is cleared.
  let wrong = 0;
  for (let i = 0; i < 25_000; i++) {
    if (parseJID(`User${i}@Example.org`).local !== `user${i}`) wrong++;
    if (parseJID('Romeo@Example.net/Home').toString() !== 'romeo@example.net/Home') wrong++;
  }
  t.equal(wrong, 0);
  t.throws(() => parseJID('bad user@example.com'), 'invalid input is not cached as valid');
  t.throws(() => parseJID('bad user@example.com'));
});

t.test('bidi rule in localparts', async (t) => {
  t.ok(tryParseJID('שלום@example.com'), 'right-to-left localpart');
  t.ok(tryParseJID('\u0645\u0631\u062D\u0628\u0627@example.com'), 'Arabic localpart');
  t.notOk(tryParseJID('שלוםabc@example.com'), 'mixed right-to-left and left-to-right');
  t.notOk(tryParseJID('1שלום@example.com'), 'right-to-left localpart starting with a digit');
});
