import type { Knex } from 'knex';
import { STORAGE_LIMITS, assertFits } from './limits';
import type { PushRegistration, PushStore } from './types';

export class KnexPushStore implements PushStore {
  constructor(private readonly knex: Knex) {}

  async enable(registration: PushRegistration): Promise<void> {
    assertFits('user JID', registration.user, STORAGE_LIMITS.jid);
    assertFits('push service JID', registration.service, STORAGE_LIMITS.pushService);
    assertFits('push node', registration.node, STORAGE_LIMITS.pushNode);
    await this.knex('push_registrations')
      .insert({ ...registration, options: registration.options ?? null, created_at: new Date() })
      .onConflict(['user', 'service', 'node'])
      .merge(['options']);
  }

  async disable(user: string, service: string, node?: string): Promise<number> {
    const query = this.knex('push_registrations').where({ user, service });
    if (node !== undefined) query.andWhere({ node });
    return query.del();
  }

  async list(user: string): Promise<PushRegistration[]> {
    const rows: { user: string; service: string; node: string; options: string | null }[] = await this.knex('push_registrations')
      .where({ user })
      .orderBy(['service', 'node'])
      .select('user', 'service', 'node', 'options');
    return rows.map((row) => ({ user: row.user, service: row.service, node: row.node, options: row.options ?? undefined }));
  }
}
