import t from 'tap';
import { timeOrderedId } from '../../server/sm/archive';

t.test('stanza ids are RFC 9562 version 7 UUIDs: unique, in time order, random after the time', async (t) => {
  const id = timeOrderedId(Date.UTC(2026, 11, 6));
  t.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'version 7, RFC 9562 variant');
  t.equal(parseInt(id.replace(/-/g, '').slice(0, 12), 16), Date.UTC(2026, 11, 6), 'the first 48 bits are the time in ms');
  const many = Array.from({ length: 100_000 }, () => timeOrderedId(1_000_000));
  t.equal(new Set(many).size, many.length, '100,000 ids of one millisecond are all different');
  const earlier = timeOrderedId(1_000_000);
  const later = timeOrderedId(1_000_001);
  t.ok(earlier < later, 'a later millisecond sorts after');
  const bits = many.slice(0, 1000).map((i) => i.slice(-12)).join('');
  const ones = [...bits].reduce((n, c) => n + ((parseInt(c, 16).toString(2).match(/1/g) ?? []).length), 0);
  t.ok(Math.abs(ones / (bits.length * 4) - 0.5) < 0.02, 'the random part is about half ones');
});
