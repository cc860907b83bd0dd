import type { Knex } from 'knex';
import { STORAGE_LIMITS, assertFits } from './limits';
import type { PrivateStore } from './types';

export class KnexPrivateStore implements PrivateStore {
  constructor(private readonly knex: Knex) {}

  async get(user: string, namespace: string): Promise<string | undefined> {
    const row: { xml: string } | undefined = await this.knex('private_xml').where({ user, namespace }).first('xml');
    return row?.xml;
  }

  async all(user: string): Promise<{ namespace: string; xml: string }[]> {
    return this.knex('private_xml').where({ user }).orderBy('namespace').select('namespace', 'xml');
  }

  async set(user: string, namespace: string, xml: string): Promise<void> {
    assertFits('user JID', user, STORAGE_LIMITS.jid);
    assertFits('namespace', namespace, STORAGE_LIMITS.namespace);
    await this.knex('private_xml').insert({ user, namespace, xml }).onConflict(['user', 'namespace']).merge(['xml']);
  }
}
