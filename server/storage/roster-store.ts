import type { Knex } from 'knex';
import { boolFromColumn } from './column-values';
import { STORAGE_LIMITS, assertFits } from './limits';
import type { RosterItem, RosterStore, Subscription } from './types';
import { inWriteTransaction } from './write-transaction';

interface RosterRow {
  contact: string;
  name: string | null;
  subscription: Subscription;
  ask: unknown;
  approved: unknown;
  groups: string;
}

export class KnexRosterStore implements RosterStore {
  constructor(private readonly knex: Knex) {}

  async getItems(user: string): Promise<RosterItem[]> {
    const rows: RosterRow[] = await this.knex('roster_items').where({ user }).orderBy('contact');
    return rows.map(itemFromRow);
  }

  async getItem(user: string, contact: string): Promise<RosterItem | undefined> {
    const row: RosterRow | undefined = await this.knex('roster_items').where({ user, contact }).first();
    return row && itemFromRow(row);
  }

  async setItem(user: string, item: RosterItem): Promise<void> {
    assertFits('user JID', user, STORAGE_LIMITS.jid);
    assertFits('roster item JID', item.jid, STORAGE_LIMITS.jid);
    const columns = {
      name: item.name ?? null,
      subscription: item.subscription,
      ask: item.ask === true,
      approved: item.approved === true,
      groups: JSON.stringify(item.groups),
    };
    await inWriteTransaction(this.knex, async (trx) => {
      await trx('roster_items')
        .insert({ user, contact: item.jid, ...columns })
        .onConflict(['user', 'contact'])
        .merge(Object.keys(columns));
      await bumpVersion(trx, user);
    });
  }

  async removeItem(user: string, contact: string): Promise<boolean> {
    return inWriteTransaction(this.knex, async (trx) => {
      const removed = await trx('roster_items').where({ user, contact }).del();
      if (removed > 0) await bumpVersion(trx, user);
      return removed > 0;
    });
  }

  async getVersion(user: string): Promise<string> {
    const row: { version: number | string } | undefined = await this.knex('roster_versions').where({ user }).first('version');
    return row ? String(row.version) : '0';
  }

  async addPendingIn(user: string, contact: string, stanzaXml: string): Promise<void> {
    assertFits('user JID', user, STORAGE_LIMITS.jid);
    assertFits('contact JID', contact, STORAGE_LIMITS.jid);
    // A repeated request replaces the stored stanza but keeps its place in the queue.
    await this.knex('roster_pending_in')
      .insert({ user, contact, stanza: stanzaXml, received_at: new Date() })
      .onConflict(['user', 'contact'])
      .merge(['stanza']);
  }

  async removePendingIn(user: string, contact: string): Promise<boolean> {
    return (await this.knex('roster_pending_in').where({ user, contact }).del()) > 0;
  }

  async getPendingIn(user: string): Promise<{ contact: string; stanzaXml: string }[]> {
    const rows: { contact: string; stanza: string }[] = await this.knex('roster_pending_in')
      .where({ user })
      .orderBy([{ column: 'received_at' }, { column: 'contact' }])
      .select('contact', 'stanza');
    return rows.map((r) => ({ contact: r.contact, stanzaXml: r.stanza }));
  }
}

/**
 * XEP-0237 §3: the version must change whenever the roster does. A user's first version is the
 * current time in ms rather than 1, so an account deleted and created again never repeats a version
 * a client may still have cached from the old one.
 */
async function bumpVersion(trx: Knex.Transaction, user: string): Promise<void> {
  await trx('roster_versions')
    .insert({ user, version: Date.now() })
    .onConflict('user')
    .merge({ version: trx.raw('?? + 1', ['roster_versions.version']) });
}

function itemFromRow(row: RosterRow): RosterItem {
  const item: RosterItem = { jid: row.contact, subscription: row.subscription, groups: JSON.parse(row.groups) };
  if (row.name !== null) item.name = row.name;
  if (boolFromColumn(row.ask)) item.ask = true;
  if (boolFromColumn(row.approved)) item.approved = true;
  return item;
}
