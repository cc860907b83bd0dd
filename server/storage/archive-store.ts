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

/**
 * Longest between a row's timestamp and the moment it gets its id in the database [5 min]: the
 * node's clock against the database's order, plus the wait in the node's queue (a 100 ms batch,
 * five attempts, a held writer). Date bounds (XEP-0313 start and end) become id bounds with twice
 * this as margin, and only the rows within the margins are read for their timestamps; a row that
 * reached the database later still has its id, so paging by id is exact whatever the clocks say.
 */
const ROW_LAG_MS = 5 * 60_000;

/**
 * Id bounds of a query with start or end: ids in [from, to] may match (undefined: no bound);
 * those in `sure` do without reading their timestamps; no `sure`: every row is to be checked.
 */
interface IdSpan {
  from?: number;
  to?: number;
  sure?: { from?: number; to?: number };
}

/** Most JIDs kept in one prefs list [1000]. */
const MAX_PREFS_JIDS = 1000;

/**
 * XEP-0313 archives in the shared database. Pages are ranges of the autoincrement `id` within one
 * user's rows (indexes (user) and (user, with_jid), which end in the id), so paging costs the same
 * on the first page as on the ten-thousandth. Stanza ids are found on (stanza_id, user) and dates
 * become ids on (created_at): both grow at their end (migrations/012-archive-indexes.ts says why).
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

  /**
   * One page of `user`'s archive. The query form's fields (with, start, end, after-id, before-id,
   * ids) choose the result set, which RSM's <count/> counts; RSM's <after/> and <before/> page
   * through it, <before/> from its end. XEP-0313's Implementation Considerations: before-id is a
   * filter and does not page backwards. The two kinds combine, so a client pages through
   * "everything after id X" with <after/>.
   */
  async query(user: string, filter: ArchiveFilter, page: { max: number; after?: string; before?: string | true }): Promise<ArchivePage | 'item-not-found'> {
    const rowIdOf = async (stanzaId: string | undefined): Promise<number | undefined | 'item-not-found'> => {
      if (stanzaId === undefined) return undefined;
      const row = await this.knex('archive_messages').where({ user, stanza_id: stanzaId }).first('id');
      return row ? Number(row.id) : 'item-not-found';
    };
    // Every id the query names has to be in the archive (§4.1.3, §5.1), even when nothing else matches.
    const afterRow = await rowIdOf(filter.afterId);
    const beforeRow = await rowIdOf(filter.beforeId);
    const pageAfter = await rowIdOf(page.after);
    const pageBefore = await rowIdOf(typeof page.before === 'string' ? page.before : undefined);
    if (afterRow === 'item-not-found' || beforeRow === 'item-not-found' || pageAfter === 'item-not-found' || pageBefore === 'item-not-found') return 'item-not-found';
    const span = await this.idSpan(filter.start, filter.end, afterRow === undefined ? undefined : afterRow + 1, beforeRow === undefined ? undefined : beforeRow - 1);
    if (span === 'empty') return { messages: [], complete: true, count: 0 };
    // The rows of `user` the filter asks for, with ids in [from, to] (undefined: unbounded).
    const base = (from = span.from, to = span.to) => {
      const q = this.knex('archive_messages').where('user', user);
      if (filter.withJid !== undefined) q.andWhere('with_jid', filter.withJid);
      if (filter.withResource !== undefined) q.andWhere('with_resource', filter.withResource);
      if (from !== undefined) q.andWhere('id', '>=', from);
      if (to !== undefined) q.andWhere('id', '<=', to);
      if (filter.ids) q.whereIn('stanza_id', filter.ids);
      return q;
    };
    // Rows whose id leaves their time in doubt are checked against start and end themselves.
    const dated = (q: Knex.QueryBuilder) => {
      if (filter.start) q.andWhere('created_at', '>=', filter.start);
      if (filter.end) q.andWhere('created_at', '<=', filter.end);
      return q;
    };
    const q = base();
    if (span.sure && (span.sure.from !== undefined || span.sure.to !== undefined)) {
      const { from, to } = span.sure;
      q.andWhere((w) => {
        w.where((sure) => {
          if (from !== undefined) sure.where('id', '>=', from);
          if (to !== undefined) sure.andWhere('id', '<=', to);
        }).orWhere((doubtful) => void dated(doubtful));
      });
    } else if (!span.sure) dated(q);
    if (pageAfter !== undefined) q.andWhere('id', '>', pageAfter);
    if (pageBefore !== undefined) q.andWhere('id', '<', pageBefore);
    // Paging backwards (RSM <before/>): the newest of the range first, then put back in order.
    const backwards = page.before !== undefined;
    const found: Row[] = await q
      .orderBy('id', backwards ? 'desc' : 'asc')
      .limit(page.max + 1)
      .select('id', 'stanza_id', 'with_jid', 'with_resource', 'direction', 'created_at', 'stanza');
    const more = found.length > page.max;
    const rows = found.slice(0, page.max);
    if (backwards) rows.reverse();
    return { messages: rows.map(toMessage), complete: !more, count: await this.count(span, base, dated) };
  }

  /**
   * RSM's count of the rows a query matches. The rows whose ids make them surely within start and
   * end are counted on the index alone; only those in doubt (near either edge) are read.
   */
  private async count(span: IdSpan, base: (from?: number, to?: number) => Knex.QueryBuilder, dated: (q: Knex.QueryBuilder) => Knex.QueryBuilder): Promise<number> {
    const n = async (q: Knex.QueryBuilder) => Number(((await q.count({ n: '*' }).first()) as { n: number | string } | undefined)?.n ?? 0);
    if (!span.sure) return n(dated(base()));
    const { from, to } = span.sure;
    let total = await n(base(from ?? span.from, to ?? span.to));
    if (from !== undefined) total += await n(dated(base(span.from, from - 1)));
    if (to !== undefined) total += await n(dated(base(to + 1, span.to)));
    return total;
  }

  /**
   * What `start` and `end` mean for ids, found on the (created_at) index: the range of ids that can
   * hold rows stamped within them (`from`, `to`), and the part whose rows surely are (`sure`).
   * Ids grow in the order rows reach the database and each row is stamped within ROW_LAG_MS of
   * that (ROW_LAG_MS says why), so a row stamped more than twice that before `start` got its id
   * before any row stamped from `start` on, and one stamped that long after `start` got its id
   * after every row stamped before. `idFrom` and `idTo` bound the ids besides (after-id, before-id).
   * 'empty': no row can match.
   */
  private async idSpan(start: Date | undefined, end: Date | undefined, idFrom: number | undefined, idTo: number | undefined): Promise<IdSpan | 'empty'> {
    if (start && end && start > end) return 'empty';
    const margin = 2 * ROW_LAG_MS;
    const idAt = async (op: '<' | '<=' | '>' | '>=', at: Date) => {
      const row = await this.knex('archive_messages').where('created_at', op, at).orderBy('created_at', op[0] === '<' ? 'desc' : 'asc').first('id');
      return row ? Number(row.id) : undefined;
    };
    const span: IdSpan = {};
    let sureFrom: number | undefined;
    let sureTo: number | undefined;
    let sureNone = false;
    if (start) {
      const before = await idAt('<', new Date(start.getTime() - margin));
      if (before !== undefined) span.from = before + 1;
      sureFrom = await idAt('>=', new Date(start.getTime() + margin));
      if (sureFrom === undefined) sureNone = true;
    }
    if (end) {
      const after = await idAt('>', new Date(end.getTime() + margin));
      if (after !== undefined) span.to = after - 1;
      sureTo = await idAt('<=', new Date(end.getTime() - margin));
      if (sureTo === undefined) sureNone = true;
    }
    if (idFrom !== undefined) span.from = Math.max(idFrom, span.from ?? idFrom);
    if (idTo !== undefined) span.to = Math.min(idTo, span.to ?? idTo);
    if (span.from !== undefined && span.to !== undefined && span.from > span.to) return 'empty';
    if (!start && !end) span.sure = {};
    else if (!sureNone) {
      // Kept within the span, a sure start at most one past its end and a sure end at most one
      // before its start, so that count() counts each row of the span once, and only those.
      const clamp = (id: number, low: number | undefined, high: number | undefined) => Math.min(Math.max(id, low ?? -Infinity), high ?? Infinity);
      const from = sureFrom === undefined ? undefined : clamp(sureFrom, span.from, span.to === undefined ? undefined : span.to + 1);
      const to = sureTo === undefined ? undefined : clamp(sureTo, span.from === undefined ? undefined : span.from - 1, span.to);
      if (from === undefined || to === undefined || from <= to) span.sure = { from, to };
    }
    return span;
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
