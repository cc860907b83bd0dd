import t from 'tap';
import { readPubSubOptions } from '../../components/pubsub/options';
import { loadConfig } from '../../server/config/config';

/** The pubsub component's options as it reads them at start-up, from command-line keys. */
function options(...keys: string[]) {
  const config = loadConfig(['--comp-name-1=pubsub', '--comp-class-1=pubsub', ...keys], { cwd: '/srv/xmpp', env: {}, hostname: 'node-a' });
  return readPubSubOptions({ name: 'pubsub', config, option: (key) => config.raw.get(`--pubsub-${key}`) });
}

t.test('every pubsub key has its documented default', async (t) => {
  t.same(options(), { maxItems: 10, maxItemsLimit: 1000, nodeCreation: 'any', maxPayloadSize: 65536, autoCreate: true, defaultAccessModel: 'open' });
});

t.test('pubsub keys are read and validated', async (t) => {
  const o = options('--pubsub-max-items=5', '--pubsub-node-creation=admins', '--pubsub-auto-create=false', '--pubsub-default-access-model=presence');
  t.equal(o.maxItems, 5);
  t.equal(o.nodeCreation, 'admins');
  t.equal(o.autoCreate, false);
  t.equal(o.defaultAccessModel, 'presence');
  t.throws(() => options('--pubsub-max-items=many'), /--pubsub-max-items.*not an integer/);
  t.throws(() => options('--pubsub-max-items=20', '--pubsub-max-items-limit=10'), /--pubsub-max-items.*larger than --pubsub-max-items-limit/);
  t.throws(() => options('--pubsub-max-payload-size=1000000'), /--pubsub-max-payload-size/);
  t.throws(() => options('--pubsub-node-creation=nobody'), /--pubsub-node-creation/);
  t.throws(() => options('--pubsub-default-access-model=authorize'), /--pubsub-default-access-model/);
  t.throws(() => options('--pubsub-max-itmes=5'), /--pubsub-max-itmes.*unknown key/, 'a misspelt key stops start-up, named');
});
