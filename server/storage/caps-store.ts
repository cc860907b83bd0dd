import type { Knex } from 'knex';
import { isDuplicateKey } from './sql-errors';

/** Longest XEP-0115 ver kept (base64 of SHA-512 is 88 characters); see migrations/004-pubsub.ts. */
export const CAPS_VER_LENGTH = 128;

export interface CapsRecord {
  hash: string;
  features: string[];
}

/**
 * The XEP-0115 entity capabilities cache shared by every node: a verified ver string and the
 * disco#info features it stands for. A ver is a hash of those features, so a row never changes.
 */
export interface CapsStore {
  get(ver: string): Promise<CapsRecord | undefined>;
  /** Stores a verified ver; a ver stored already (by another node) is left as it is. */
  put(ver: string, record: CapsRecord): Promise<void>;
}

export class KnexCapsStore implements CapsStore {
  constructor(private readonly knex: Knex) {}

  async get(ver: string): Promise<CapsRecord | undefined> {
    if (ver.length > CAPS_VER_LENGTH) return undefined;
    const row: { hash: string; features: string } | undefined = await this.knex('caps').where({ ver }).first('hash', 'features');
    return row && { hash: row.hash, features: JSON.parse(row.features) };
  }

  async put(ver: string, record: CapsRecord): Promise<void> {
    if (ver.length > CAPS_VER_LENGTH) return;
    try {
      await this.knex('caps').insert({ ver, hash: record.hash, features: JSON.stringify(record.features), created_at: new Date() }).onConflict('ver').ignore();
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
    }
  }
}
