import t from 'tap';
import { AddressLimits } from '../../server/transports/address-limits';

t.test('connections opened on other nodes are taken from this node\'s bucket', async (t) => {
  const limits = new AddressLimits(() => ({ maxPerAddress: 0, maxWaitingPerAddress: 0, ratePerSecond: 2 }), []);
  t.teardown(() => limits.stop());
  // The bucket holds five seconds' worth (10): a peer reports 9 opened there.
  limits.peerReport('node2', [{ address: '::ffff:192.0.2.1', open: 9, waiting: 0, opened: 9 }]);
  const first = limits.admit('192.0.2.1');
  t.ok('release' in first, 'one token left here');
  const second = limits.admit('192.0.2.1');
  t.ok('refused' in second && /more than 2 new connections a second from 192\.0\.2\.1/.test(second.refused), 'then the cluster-wide rate is spent');
  t.ok('release' in limits.admit('192.0.2.2'), 'another address has its own bucket');
});

t.test('a node reports only the addresses that matter against a shared limit, and starts counting afresh', async (t) => {
  const limits = new AddressLimits(() => ({ maxPerAddress: 40, maxWaitingPerAddress: 0, ratePerSecond: 20 }), ['10.9.9.9']);
  t.teardown(() => limits.stop());
  for (let i = 0; i < 5; i++) limits.admit('192.0.2.1');
  limits.admit('192.0.2.2');
  for (let i = 0; i < 5; i++) limits.admit('10.9.9.9');
  // Two nodes: an even share of 40 open is 20, a quarter of it 5; of 20 a second, 10 and 3.
  t.same(limits.report(2), [{ address: '192.0.2.1', open: 5, waiting: 5, opened: 5 }], 'the busy address, not the quiet one nor the exempt one');
  t.same(limits.report(2), [{ address: '192.0.2.1', open: 5, waiting: 5, opened: 0 }], 'still holding 5 open, none opened since');
});

t.test('connections held on other nodes count against --max-connections-per-ip, until the peer is gone', async (t) => {
  const limits = new AddressLimits(() => ({ maxPerAddress: 3, maxWaitingPerAddress: 0, ratePerSecond: 0 }), []);
  t.teardown(() => limits.stop());
  limits.peerReport('node2', [{ address: '192.0.2.1', open: 2, waiting: 0, opened: 0 }]);
  t.ok('release' in limits.admit('192.0.2.1'), 'the third connection, here');
  const fourth = limits.admit('192.0.2.1');
  t.ok('refused' in fourth && /more than 3 connections from 192\.0\.2\.1 \(on all cluster nodes\)/.test(fourth.refused), 'the fourth is refused');
  limits.peerGone('node2');
  t.ok('release' in limits.admit('192.0.2.1'), 'the peer\'s connections went with it');
});

t.test('connections waiting to log in are limited apart; a login frees the place, also on other nodes', async (t) => {
  const limits = new AddressLimits(() => ({ maxPerAddress: 0, maxWaitingPerAddress: 2, ratePerSecond: 0 }), []);
  t.teardown(() => limits.stop());
  const first = limits.admit('192.0.2.1');
  const second = limits.admit('192.0.2.1');
  const third = limits.admit('192.0.2.1');
  t.ok('refused' in third && /more than 2 connections from 192\.0\.2\.1 waiting to log in/.test(third.refused), 'a third waiting connection is refused');
  if ('refused' in first || 'refused' in second) throw new Error('the first two were refused');
  first.authenticated();
  first.authenticated();
  t.ok('release' in limits.admit('192.0.2.1'), 'once one has logged in, another may wait');
  first.release();
  second.release();
  t.same(limits.report(1), [{ address: '192.0.2.1', open: 1, waiting: 1, opened: 3 }], 'a logged-in connection released does not count twice');
  limits.peerReport('node2', [{ address: '192.0.2.1', open: 1, waiting: 1, opened: 0 }]);
  const refused = limits.admit('192.0.2.1');
  t.ok('refused' in refused && /waiting to log in \(on all cluster nodes\)/.test(refused.refused), 'waiting connections on other nodes count');
});
