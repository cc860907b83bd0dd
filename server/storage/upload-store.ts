import type { Knex } from 'knex';
import { dateFromColumn } from './column-values';
import { STORAGE_LIMITS, assertFits } from './limits';
import type { UploadSlot, UploadStore } from './types';
import { inWriteTransaction } from './write-transaction';

/** Bytes per stored chunk [256 KiB]: far below MySQL's max_allowed_packet. */
export const UPLOAD_CHUNK_BYTES = 256 * 1024;

interface Row {
  id: string;
  user: string;
  filename: string;
  size: number | string;
  content_type: string;
  created_at: unknown;
  uploaded_at: unknown;
}

export class KnexUploadStore implements UploadStore {
  constructor(private readonly knex: Knex) {}

  async createSlot(slot: Omit<UploadSlot, 'uploadedAt'>): Promise<void> {
    assertFits('user JID', slot.user, STORAGE_LIMITS.jid);
    await this.knex('upload_slots').insert({
      id: slot.id, user: slot.user, filename: slot.filename, size: slot.size, content_type: slot.contentType, created_at: slot.createdAt,
    });
  }

  async slot(id: string): Promise<UploadSlot | undefined> {
    const row: Row | undefined = await this.knex('upload_slots').where({ id }).first();
    return row && {
      id: row.id, user: row.user, filename: row.filename, size: Number(row.size), contentType: row.content_type,
      createdAt: dateFromColumn(row.created_at), uploadedAt: row.uploaded_at ? dateFromColumn(row.uploaded_at) : undefined,
    };
  }

  async store(id: string, data: Buffer): Promise<boolean> {
    return inWriteTransaction(this.knex, async (trx) => {
      // Once only: the first PUT that completes owns the slot.
      const claimed = await trx('upload_slots').where({ id }).whereNull('uploaded_at').update({ uploaded_at: new Date() });
      if (claimed === 0) return false;
      for (let seq = 0, at = 0; at < data.length || seq === 0; seq++, at += UPLOAD_CHUNK_BYTES) {
        await trx('upload_chunks').insert({ slot_id: id, seq, data: data.subarray(at, at + UPLOAD_CHUNK_BYTES) });
      }
      return true;
    });
  }

  async *chunks(id: string): AsyncGenerator<Buffer> {
    for (let seq = 0; ; seq++) {
      const row = await this.knex('upload_chunks').where({ slot_id: id, seq }).first('data');
      if (!row) return;
      yield Buffer.from(row.data as Uint8Array);
    }
  }

  async usage(user: string, unusedSince: Date): Promise<number> {
    const row = (await this.knex('upload_slots').where({ user })
      .andWhere((q) => q.whereNotNull('uploaded_at').orWhere('created_at', '>=', unusedSince))
      .sum({ total: 'size' }).first()) as { total: number | string | null } | undefined;
    return Number(row?.total ?? 0);
  }

  async removeOlderThan(cutoff: Date, limit: number): Promise<number> {
    const ids = (await this.knex('upload_slots').where('created_at', '<', cutoff).limit(limit).select('id')).map((r: { id: string }) => r.id);
    if (ids.length === 0) return 0;
    await inWriteTransaction(this.knex, async (trx) => {
      await trx('upload_chunks').whereIn('slot_id', ids).del();
      await trx('upload_slots').whereIn('id', ids).del();
    });
    return ids.length;
  }

  async removeUnused(before: Date): Promise<number> {
    return this.knex('upload_slots').whereNull('uploaded_at').andWhere('created_at', '<', before).del();
  }
}
