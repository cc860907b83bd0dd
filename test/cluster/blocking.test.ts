import t from 'tap';
import { startCluster } from '../helpers/cluster';
import { createClusterDatabase } from '../helpers/databases';
import { nextStanza, sleep, xml } from '../helpers/server';

t.test('a block made on one node is enforced on the others at once, and so is the unblock', async (t) => {
  const dbUri = await createClusterDatabase(t);
  if (!dbUri) return;
  const cluster = await startCluster(t, { nodes: 2, dbUri, strategy: 'online-users-caching' });
  await cluster.addUser('amy');
  await cluster.addUser('bert');
  await cluster.storage.roster.setItem('amy@localhost', { jid: 'bert@localhost', subscription: 'both', groups: [] });
  await cluster.storage.roster.setItem('bert@localhost', { jid: 'amy@localhost', subscription: 'both', groups: [] });
  const amy = await cluster.login(0, 'amy', { resource: 'a' });
  const bert = await cluster.login(1, 'bert', { resource: 'b' });

  const first = nextStanza(bert, (s) => s.is('message') && s.getChildText('body') === 'one');
  await amy.send(xml('message', { to: 'bert@localhost', type: 'chat' }, xml('body', {}, 'one')));
  await first;
  t.pass('before the block, messages cross nodes (and amy\'s node has read bert\'s empty block list)');

  await bert.iqCaller.request(xml('iq', { type: 'set' }, xml('block', { xmlns: 'urn:xmpp:blocking' }, xml('item', { jid: 'amy@localhost' }))));
  const bounced = nextStanza(amy, (s) => s.is('message') && s.attrs.type === 'error');
  const seen: string[] = [];
  bert.on('stanza', (s: { is(n: string): boolean; getChildText(n: string): string | null }) => {
    if (s.is('message')) seen.push(s.getChildText('body') ?? '');
  });
  const presences: string[] = [];
  bert.on('stanza', (s: { is(n: string): boolean; attrs: Record<string, string>; getChildText(n: string): string | null }) => {
    if (s.is('presence') && s.attrs.from === 'amy@localhost/a') presences.push(s.getChildText('show') ?? 'available');
  });
  await amy.send(xml('message', { to: 'bert@localhost', type: 'chat', id: 'blocked' }, xml('body', {}, 'two')));
  const error = await bounced;
  t.ok(error.getChild('error')?.getChild('service-unavailable'), 'the blocked sender gets service-unavailable from the other node');
  await amy.send(xml('presence', {}, xml('show', {}, 'dnd')));
  await sleep(300);
  t.same(seen, [], 'and bert gets nothing');
  t.same(presences, [], 'not even amy\'s presence, which crosses nodes as a broadcast');

  await bert.iqCaller.request(xml('iq', { type: 'set' }, xml('unblock', { xmlns: 'urn:xmpp:blocking' })));
  const third = nextStanza(bert, (s) => s.is('message') && s.getChildText('body') === 'three');
  await amy.send(xml('message', { to: 'bert@localhost', type: 'chat' }, xml('body', {}, 'three')));
  await third;
  t.pass('after the unblock, messages flow again');
});
