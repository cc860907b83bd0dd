import { ConfigError } from '../../server/config/properties';
import type { ComponentContext } from '../component';
import { ComponentOptions } from '../component-options';
import { ACCESS_MODELS, type AccessModel } from './node-config';

/** The service-wide PubSub settings, read once from the component's own `--<name>-<key>` keys. */
export interface PubSubOptions {
  /** pubsub#max_items of a new node [10]. */
  readonly maxItems: number;
  /** The largest pubsub#max_items a node may have; "max" means this [1000]. */
  readonly maxItemsLimit: number;
  /** Who may create nodes: 'any' local user, or only the server's --admins ['any']. */
  readonly nodeCreation: 'any' | 'admins';
  /** Largest item payload in bytes, serialised [65536]; items travel inside stanzas, so at most 262144. */
  readonly maxPayloadSize: number;
  /** Publishing to a missing node creates it (pubsub#auto-create), for those who may create [true]. */
  readonly autoCreate: boolean;
  /** pubsub#access_model of a new node ['open']. */
  readonly defaultAccessModel: AccessModel;
}

/** Every key this component reads; any other `--<name>-...` key stops start-up. */
const KEYS = ['max-items', 'max-items-limit', 'node-creation', 'max-payload-size', 'auto-create', 'default-access-model'] as const;

/** Validated once at start-up (STYLE: bad config fails fast with a message naming the key). */
export function readPubSubOptions(ctx: Pick<ComponentContext, 'name' | 'option' | 'config'>): PubSubOptions {
  const options = new ComponentOptions(ctx, KEYS);
  // Clamped at 100000: a node's items are read whole for "all items" requests.
  const maxItemsLimit = options.integer('max-items-limit', 1000, 1, 100_000);
  const maxItems = options.integer('max-items', 10, 0, 100_000);
  if (maxItems > maxItemsLimit) throw new ConfigError(`is larger than ${options.key('max-items-limit')} (${maxItemsLimit})`, options.key('max-items'));
  return {
    maxItems,
    maxItemsLimit,
    nodeCreation: options.choice('node-creation', 'any', ['any', 'admins'] as const),
    maxPayloadSize: options.integer('max-payload-size', 65536, 1, 262144),
    autoCreate: options.boolean('auto-create', true),
    defaultAccessModel: options.choice('default-access-model', 'open', ACCESS_MODELS),
  };
}
