import { ConfigError } from '../server/config/properties';
import type { ComponentContext } from './component';

/**
 * Reads a component's own `--<name>-<key>` settings, once, at start-up (STYLE: bad config fails
 * fast with a message naming the key). Any `--<name>-...` key the component does not know stops
 * start-up, as unknown keys do everywhere else.
 */
export class ComponentOptions {
  constructor(
    private readonly ctx: Pick<ComponentContext, 'name' | 'option' | 'config'>,
    known: readonly string[],
  ) {
    for (const given of ctx.config.raw.keys()) {
      if (given.startsWith(`--${ctx.name}-`) && !known.some((k) => this.key(k) === given)) {
        throw new ConfigError(`unknown key for component ${ctx.name} (known: ${known.map((k) => this.key(k)).join(', ')})`, given);
      }
    }
  }

  /** The full key name, e.g. --muc-history-size. */
  key(k: string): string {
    return `--${this.ctx.name}-${k}`;
  }

  integer(k: string, fallback: number, min: number, max: number): number {
    const raw = this.ctx.option(k);
    if (raw === undefined || raw.trim() === '') return fallback;
    const value = Number(raw.trim());
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new ConfigError(`"${raw}" is not an integer from ${min} to ${max}`, this.key(k));
    }
    return value;
  }

  boolean(k: string, fallback: boolean): boolean {
    const raw = this.ctx.option(k)?.trim().toLowerCase();
    if (raw === undefined || raw === '') return fallback;
    if (raw === 'true' || raw === '1' || raw === 'yes') return true;
    if (raw === 'false' || raw === '0' || raw === 'no') return false;
    throw new ConfigError(`"${raw}" is not true or false`, this.key(k));
  }

  choice<T extends string>(k: string, fallback: T, allowed: readonly T[]): T {
    const raw = this.ctx.option(k)?.trim().toLowerCase();
    if (raw === undefined || raw === '') return fallback;
    if (!(allowed as readonly string[]).includes(raw)) throw new ConfigError(`"${raw}" is not one of ${allowed.join(', ')}`, this.key(k));
    return raw as T;
  }
}
