import type { Knex } from 'knex';
import { STORAGE_LIMITS, assertFits } from './limits';
import type { VCardStore } from './types';

export class KnexVCardStore implements VCardStore {
  constructor(private readonly knex: Knex) {}

  async get(user: string): Promise<string | undefined> {
    const row: { xml: string } | undefined = await this.knex('vcards').where({ user }).first('xml');
    return row?.xml;
  }

  async set(user: string, xml: string): Promise<void> {
    assertFits('user JID', user, STORAGE_LIMITS.jid);
    await this.knex('vcards').insert({ user, xml }).onConflict('user').merge(['xml']);
  }
}
