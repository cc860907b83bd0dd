import { ConfigError } from '../../server/config/config';
import type { ComponentContext } from '../component';

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
  const key = (k: string) => `--${ctx.name}-${k}`;
  for (const given of ctx.config.raw.keys()) {
    if (given.startsWith(`--${ctx.name}-`) && !KEYS.some((k) => key(k) === given)) {
      throw new ConfigError(`unknown key for component ${ctx.name} (known: ${KEYS.map(key).join(', ')})`, given);
    }
  }
  const integer = (k: string, fallback: number, min: number, max: number): number => {
    const raw = ctx.option(k);
    if (raw === undefined || raw.trim() === '') return fallback;
    const value = Number(raw.trim());
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new ConfigError(`"${raw}" is not an integer from ${min} to ${max}`, key(k));
    }
    return value;
  };
  const boolean = (k: string, fallback: boolean): boolean => {
    const raw = ctx.option(k)?.trim().toLowerCase();
    if (raw === undefined || raw === '') return fallback;
    if (raw === 'true' || raw === '1') return true;
    if (raw === 'false' || raw === '0') return false;
    throw new ConfigError(`"${raw}" is not true or false`, key(k));
  };
  // Clamped at 10000: every room of this node holds its history in memory.
  const historyMax = integer('history-max', 200, 0, 10000);
  const historySize = integer('history-size', 20, 0, 10000);
  if (historySize > historyMax) throw new ConfigError(`is larger than ${key('history-max')} (${historyMax})`, key('history-size'));
  const creation = (ctx.option('room-creation') ?? 'any').trim().toLowerCase();
  if (creation !== 'any' && creation !== 'admins') throw new ConfigError(`"${creation}" is not any or admins`, key('room-creation'));
  return {
    historySize,
    historyMax,
    roomCreation: creation,
    maxUsers: integer('max-users', 200, 0, 1_000_000),
    defaultPersistent: boolean('default-persistent', false),
    defaultPublic: boolean('default-public', true),
  };
}
