import path from 'node:path';
import t from 'tap';
import { strategyConformance } from '../../strategies/conformance';
import { loadStrategy } from '../../strategies/load-strategy';

const EXAMPLE = path.join(__dirname, '..', '..', 'strategies', 'examples', 'least-known-nodes.js');

strategyConformance(t, 'broadcast');
strategyConformance(t, 'online-users-caching');
strategyConformance(t, EXAMPLE, 'examples/least-known-nodes.js');

t.test('a strategy module without the interface is refused with a clear message', async (t) => {
  const ctx = { localNode: 'a', connectedNodes: () => [] };
  t.throws(() => loadStrategy(path.join(__dirname, '..', '..', 'package.json'), ctx), /default export|lacks/);
});
