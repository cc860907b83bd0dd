import { ConfigError } from '../../server/config/properties';
import type { ComponentContext } from '../component';
import { ComponentOptions } from '../component-options';

/** The service-wide MUC settings, read once from the component's own `--<name>-<key>` keys. */
export interface MucOptions {
  /** Messages a new room keeps and sends on join (muc#roomconfig_historylength default) [20]. */
  readonly historySize: number;
  /** Highest history length an owner may configure; rooms hold it in memory [200]. */
  readonly historyMax: number;
  /** Who may create rooms: 'any' local user, or only the server's --admins ['any']. */
  readonly roomCreation: 'any' | 'admins';
  /** muc#roomconfig_maxusers of a new room; 0 means no limit [200]. */
  readonly maxUsers: number;
  /** Whether a new room is persistent (muc#roomconfig_persistentroom) [false]. */
  readonly defaultPersistent: boolean;
  /** Whether a new room is listed in disco#items (muc#roomconfig_publicroom) [true]. */
  readonly defaultPublic: boolean;
}

/** Every key this component reads, with its default; any other `--<name>-...` key stops start-up. */
const KEYS = ['history-size', 'history-max', 'room-creation', 'max-users', 'default-persistent', 'default-public'] as const;

/** Validated once at start-up (STYLE: bad config fails fast with a message naming the key). */
export function readMucOptions(ctx: Pick<ComponentContext, 'name' | 'option' | 'config'>): MucOptions {
  const options = new ComponentOptions(ctx, KEYS);
  // Clamped at 10000: every room of this node holds its history in memory.
  const historyMax = options.integer('history-max', 200, 0, 10000);
  const historySize = options.integer('history-size', 20, 0, 10000);
  if (historySize > historyMax) throw new ConfigError(`is larger than ${options.key('history-max')} (${historyMax})`, options.key('history-size'));
  return {
    historySize,
    historyMax,
    roomCreation: options.choice('room-creation', 'any', ['any', 'admins'] as const),
    maxUsers: options.integer('max-users', 200, 0, 1_000_000),
    defaultPersistent: options.boolean('default-persistent', false),
    defaultPublic: options.boolean('default-public', true),
  };
}
