import type { Knex } from 'knex';
import { dateFromColumn } from './column-values';
import { STORAGE_LIMITS, assertFits } from './limits';
import type { SqliteArchiveWriter } from './sqlite-archive-writer';
import type { ArchivedMessage, ArchiveFilter, ArchivePage, ArchivePrefs, ArchiveRow, ArchiveStore } from './types';

interface Row {
  id: number | string;
  stanza_id: string;
  with_jid: string;
  with_resource: string | null;
  direction: string;
  created_at: unknown;
  stanza: string;
}

/** Rows in one INSERT statement [200] (SQLite allows 500 in the compound SELECT knex builds). */
const INSERT_ROWS = 200;

function assertRowsFit(rows: ArchiveRow[]): void {
  for (const row of rows) {
    assertFits('user JID', row.user, STORAGE_LIMITS.jid);
    assertFits('archive peer JID', row.withJid, STORAGE_LIMITS.jid);
  }
}

/** Most JIDs kept in one prefs list [1000]. */
const MAX_PREFS_JIDS = 1000;

/**
 * XEP-0313 archives in the shared database. Pages are ranges of the autoincrement `id` within one
 * user's rows (indexes (user), (user, with_jid) and (user, created_at)), so paging costs the same
 * on the first page as on the ten-thousandth.
 */
export class KnexArchiveStore implements ArchiveStore {
  readonly enqueue?: ArchiveStore['enqueue'];

  /** `writer`: SQLite files have their rows written by a thread of their own. */
  constructor(private readonly knex: Knex, private readonly writer?: SqliteArchiveWriter) {
    if (writer) {
      this.enqueue = async (rows, checkOwners, now) => {
        assertRowsFit(rows);
        return writer.enqueue(rows, checkOwners, now);
      };
    }
  }

  async append(rows: ArchiveRow[]): Promise<void> {
    if (rows.length === 0) return;
    assertRowsFit(rows);
    if (this.writer) return this.writer.append(rows);
    const insert = (db: Knex | Knex.Transaction, chunk: ArchiveRow[]) => db('archive_messages').insert(chunk.map((row) => ({
      user: row.user, stanza_id: row.stanzaId, with_jid: row.withJid, with_resource: row.withResource ?? null,
      direction: row.direction, created_at: row.at, stanza: row.stanza,
    })));
    if (rows.length <= INSERT_ROWS) return void (await insert(this.knex, rows));
    // One transaction, one commit: each index page a batch touches is written once, however many rows it took.
    await this.knex.transaction(async (trx) => {
      for (let i = 0; i < rows.length; i += INSERT_ROWS) await insert(trx, rows.slice(i, i + INSERT_ROWS));
    });
  }

  async query(user: string, filter: ArchiveFilter, page: { max: number; after?: string; before?: string | true }): Promise<ArchivePage | 'item-not-found'> {
    // start and end become bounds on the id (found on the (user, created_at) index): ids grow with
    // time, and a range of ids is what the (user) and (user, with_jid) indexes page through.
    const startId = filter.start ? await this.edgeId(user, '>=', filter.start) : undefined;
    const endId = filter.end ? await this.edgeId(user, '<=', filter.end) : undefined;
    if ((filter.start && startId === undefined) || (filter.end && endId === undefined)) {
      return { messages: [], complete: true, count: 0 };
    }
    const base = () => {
      const q = this.knex('archive_messages').where('user', user);
      if (filter.withJid !== undefined) q.andWhere('with_jid', filter.withJid);
      if (filter.withResource !== undefined) q.andWhere('with_resource', filter.withResource);
      if (startId !== undefined) q.andWhere('id', '>=', startId);
      if (endId !== undefined) q.andWhere('id', '<=', endId);
      if (filter.ids) q.whereIn('stanza_id', filter.ids);
      return q;
    };
    const rowIdOf = async (stanzaId: string): Promise<number | undefined> => {
      const row = await this.knex('archive_messages').where({ user, stanza_id: stanzaId }).first('id');
      return row ? Number(row.id) : undefined;
    };
    const afterId = filter.afterId ?? page.after;
    const beforeId = filter.beforeId ?? (typeof page.before === 'string' ? page.before : undefined);
    const q = base();
    if (afterId !== undefined) {
      const id = await rowIdOf(afterId);
      if (id === undefined) return 'item-not-found';
      q.andWhere('id', '>', id);
    }
    if (beforeId !== undefined) {
      const id = await rowIdOf(beforeId);
      if (id === undefined) return 'item-not-found';
      q.andWhere('id', '<', id);
    }
    // Paging backwards (RSM <before/>): the newest of the range first, then put back in order.
    const backwards = page.before !== undefined || (filter.beforeId !== undefined && afterId === undefined);
    const found: Row[] = await q
      .orderBy('id', backwards ? 'desc' : 'asc')
      .limit(page.max + 1)
      .select('id', 'stanza_id', 'with_jid', 'with_resource', 'direction', 'created_at', 'stanza');
    const more = found.length > page.max;
    const rows = found.slice(0, page.max);
    if (backwards) rows.reverse();
    const counted = (await base().count({ n: '*' }).first()) as { n: number | string } | undefined;
    return { messages: rows.map(toMessage), complete: !more, count: Number(counted?.n ?? 0) };
  }

  /** The first id at or after `at` ('>='), or the last at or before it ('<='), in `user`'s archive. */
  private async edgeId(user: string, op: '>=' | '<=', at: Date): Promise<number | undefined> {
    const order = op === '>=' ? 'asc' : 'desc';
    const row = await this.knex('archive_messages').where('user', user).andWhere('created_at', op, at)
      .orderBy([{ column: 'created_at', order }, { column: 'id', order }]).first('id');
    return row ? Number(row.id) : undefined;
  }

  async bounds(user: string): Promise<{ first?: ArchivedMessage; last?: ArchivedMessage }> {
    const edge = async (order: 'asc' | 'desc') => {
      const row: Row | undefined = await this.knex('archive_messages').where('user', user).orderBy('id', order)
        .first('id', 'stanza_id', 'with_jid', 'with_resource', 'direction', 'created_at', 'stanza');
      return row ? toMessage(row) : undefined;
    };
    return { first: await edge('asc'), last: await edge('desc') };
  }

  async prefs(user: string): Promise<ArchivePrefs | undefined> {
    const row = await this.knex('archive_prefs').where('user', user).first('default_mode', 'always_jids', 'never_jids');
    if (!row) return undefined;
    return { default: row.default_mode as ArchivePrefs['default'], always: JSON.parse(row.always_jids), never: JSON.parse(row.never_jids) };
  }

  async prefsOf(users: string[]): Promise<Map<string, ArchivePrefs>> {
    const out = new Map<string, ArchivePrefs>();
    if (users.length === 0) return out;
    const rows = await this.knex('archive_prefs').whereIn('user', users).select('user', 'default_mode', 'always_jids', 'never_jids');
    for (const row of rows) out.set(row.user, { default: row.default_mode, always: JSON.parse(row.always_jids), never: JSON.parse(row.never_jids) });
    return out;
  }

  async setPrefs(user: string, prefs: ArchivePrefs): Promise<void> {
    assertFits('user JID', user, STORAGE_LIMITS.jid);
    const always = prefs.always.slice(0, MAX_PREFS_JIDS);
    const never = prefs.never.slice(0, MAX_PREFS_JIDS);
    await this.knex('archive_prefs')
      .insert({ user, default_mode: prefs.default, always_jids: JSON.stringify(always), never_jids: JSON.stringify(never) })
      .onConflict('user')
      .merge(['default_mode', 'always_jids', 'never_jids']);
  }

  async removeOlderThan(cutoff: Date, limit: number): Promise<number> {
    const ids = (await this.knex('archive_messages').where('created_at', '<', cutoff).orderBy('id').limit(limit).select('id')).map((r: { id: number }) => r.id);
    if (ids.length === 0) return 0;
    return this.knex('archive_messages').whereIn('id', ids).del();
  }
}

function toMessage(row: Row): ArchivedMessage {
  return {
    stanzaId: row.stanza_id, withJid: row.with_jid, withResource: row.with_resource ?? undefined,
    direction: row.direction === 'in' ? 'in' : 'out', at: dateFromColumn(row.created_at), stanza: row.stanza,
  };
}
