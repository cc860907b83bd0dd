import t from 'tap';
import { ConfigError, parseProperties } from '../../server/config/properties';

const one = (text: string) => {
  const entries = parseProperties(text);
  if (entries.length !== 1) throw new Error(`expected one entry, got ${entries.length}`);
  return entries[0];
};

t.test('key = value, key: value and key value all give the same entry', async (t) => {
  for (const line of ['--a = b', '--a=b', '--a: b', '--a:b', '--a b', '--a\tb', '   --a   =   b']) {
    t.same(one(line), { key: '--a', value: 'b', line: 1 }, JSON.stringify(line));
  }
});

t.test('# and ! comment lines and blank lines are skipped', async (t) => {
  const entries = parseProperties('# comment\n! also a comment\n\n   \n  # indented comment\n--a = 1\n');
  t.same(entries, [{ key: '--a', value: '1', line: 6 }]);
});

t.test('a # inside a value is part of the value', async (t) => {
  t.equal(one('--secret = a#b!c').value, 'a#b!c');
});

t.test('a key with no value has an empty value', async (t) => {
  t.same(one('--admins'), { key: '--admins', value: '', line: 1 });
  t.same(one('--admins ='), { key: '--admins', value: '', line: 1 });
});

t.test('only the first separator splits key from value', async (t) => {
  t.equal(one('--user-db-uri = mysql://u:p@h:3306/db?x=1').value, 'mysql://u:p@h:3306/db?x=1');
  t.equal(one('--a = = b').value, '= b');
});

t.test('a trailing backslash continues the entry on the next line, without its indentation', async (t) => {
  const entries = parseProperties('--virt-hosts = a.example,\\\n    b.example,\\\n    c.example\n--next = 1');
  t.same(entries, [
    { key: '--virt-hosts', value: 'a.example,b.example,c.example', line: 1 },
    { key: '--next', value: '1', line: 4 },
  ]);
});

t.test('an escaped backslash at the end of a line does not continue it', async (t) => {
  const entries = parseProperties('--a = x\\\\\n--b = y');
  t.same(entries.map((e) => [e.key, e.value]), [['--a', 'x\\'], ['--b', 'y']]);
});

t.test('a continued line starting with # is not a comment', async (t) => {
  t.equal(one('--a = 1\\\n  #2').value, '1#2');
});

t.test('escapes \\t \\n \\r \\f \\\\ and \\uXXXX are decoded', async (t) => {
  t.equal(one('--a = x\\ty\\nz\\r\\f\\\\\\u00e9\\u0041').value, 'x\ty\nz\r\f\\éA');
});

t.test('escaped separators and spaces belong to the key', async (t) => {
  t.same(one('my\\=key\\:with\\ space = v'), { key: 'my=key:with space', value: 'v', line: 1 });
});

t.test('an unknown escape stands for the character itself', async (t) => {
  t.equal(one('--a = \\q\\#').value, 'q#');
});

t.test('trailing whitespace of a value is dropped unless escaped', async (t) => {
  t.equal(one('--a = value   \t').value, 'value');
  t.equal(one('--a = value\\ ').value, 'value ');
});

t.test('a malformed \\u escape is an error naming file and line', async (t) => {
  t.throws(() => parseProperties('# x\n--a = \\u12G4', 'etc/init.properties'), {
    name: 'ConfigError',
    message: /^etc\/init\.properties:2: malformed \\uXXXX escape/,
  });
  t.type(t.throws(() => parseProperties('--a = \\u12')), ConfigError);
});

t.test('CRLF and CR line endings count lines like LF', async (t) => {
  const entries = parseProperties('--a = 1\r\n--b = 2\r--c = 3');
  t.same(entries.map((e) => [e.key, e.value, e.line]), [['--a', '1', 1], ['--b', '2', 2], ['--c', '3', 3]]);
});

t.test('Tigase type suffixes are stripped from the key and recorded upper-case', async (t) => {
  t.same(one('--cluster-mode[B] = true'), { key: '--cluster-mode', value: 'true', line: 1, type: 'B' });
  t.same(one('--c2s-ports[i] = 5222,5223'), { key: '--c2s-ports', value: '5222,5223', line: 1, type: 'I' });
  t.same(one('--x[L]=1').type, 'L');
  t.same(one('--virt-hosts[s] = a,b').type, 'S');
  t.same(one('--b[b]: yes').type, 'B');
});

t.test('a bracket that is not a type suffix stays in the key', async (t) => {
  t.equal(one('--odd[X] = 1').key, '--odd[X]');
});

t.test('keys that do not start with -- are parsed like any other', async (t) => {
  t.same(one('config-type = --gen-config-def'), { key: 'config-type', value: '--gen-config-def', line: 1 });
});

t.test('duplicate keys are all returned in file order', async (t) => {
  const entries = parseProperties('--a = 1\n--a = 2');
  t.same(entries.map((e) => e.value), ['1', '2']);
});

t.test('a line with a separator but no key is an error', async (t) => {
  t.throws(() => parseProperties('\n= value', 'f.properties'), { message: /^f\.properties:2: missing key/ });
});

t.test('the default source name is init.properties', async (t) => {
  t.throws(() => parseProperties(': v'), { message: /^init\.properties:1:/ });
});
