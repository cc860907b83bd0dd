import t from 'tap';
import type { StanzaSink } from '../../server/sm/session';
import { SessionManager } from '../../server/sm/session-manager';
import { UserCache } from '../../server/sm/user-cache';

const sink = (id: string): StanzaSink => ({ id, send: () => undefined, close: () => undefined });

/**
 * Storage as UserCache reads it: each read of a user waits until the test answers it, so the
 * order of reads, answers and changes is set by the test.
 */
function pendingReads() {
  const reads: { user: string; answer: (value: string) => void }[] = [];
  const load = (user: string) => new Promise<string>((answer) => reads.push({ user, answer }));
  return { reads, load };
}

t.test('stanzas that need a value being read share the read, and go on in the order they came', async (t) => {
  const { reads, load } = pendingReads();
  const cache = new UserCache(new SessionManager(), load);
  const order: number[] = [];
  const waiting = [1, 2, 3].map((n) => cache.get('bob@localhost').then((value) => {
    order.push(n);
    return value;
  }));
  t.equal(reads.length, 1, 'storage is asked once');
  t.equal(cache.peek('bob@localhost'), undefined, 'nothing cached while it is read');
  reads[0].answer('v1');
  t.same(await Promise.all(waiting), ['v1', 'v1', 'v1']);
  t.same(order, [1, 2, 3]);
  t.equal(cache.peek('bob@localhost'), 'v1', 'then kept');
  t.equal(await cache.get('bob@localhost'), 'v1');
  t.equal(reads.length, 1, 'and read no more');
});

t.test('a change during a read: later readers read again, and the older read is not kept', async (t) => {
  const { reads, load } = pendingReads();
  const cache = new UserCache(new SessionManager(), load);
  const before = cache.get('bob@localhost');
  cache.forget('bob@localhost');
  const after = cache.get('bob@localhost');
  t.equal(reads.length, 2, 'a reader after the change does not share the read from before it');
  reads[1].answer('new');
  reads[0].answer('old');
  t.equal(await before, 'old');
  t.equal(await after, 'new');
  t.equal(cache.peek('bob@localhost'), 'new', 'what was read before the change is not cached');
});

t.test('a failed read fails its readers and is not kept; the next reader reads again', async (t) => {
  let fail = true;
  let reads = 0;
  const cache = new UserCache(new SessionManager(), async () => {
    reads++;
    if (fail) throw new Error('database down');
    return 'v';
  });
  await t.rejects(Promise.all([cache.get('bob@localhost'), cache.get('bob@localhost')]), /database down/);
  t.equal(reads, 1);
  fail = false;
  t.equal(await cache.get('bob@localhost'), 'v');
  t.equal(reads, 2);
});

t.test('a user with a session keeps the value until a change; the last session to end drops it', async (t) => {
  const { reads, load } = pendingReads();
  const sessions = new SessionManager();
  const cache = new UserCache(sessions, load);
  const phone = sessions.bind(sink('c1'), 'bob', 'localhost', 'phone');
  const laptop = sessions.bind(sink('c2'), 'bob', 'localhost', 'laptop');
  const value = cache.get('bob@localhost');
  reads[0].answer('v');
  await value;
  sessions.end(phone);
  t.equal(cache.peek('bob@localhost'), 'v', 'one session left');
  sessions.end(laptop);
  t.equal(cache.peek('bob@localhost'), undefined, 'no session left: dropped');
});
