import type { Knex } from 'knex';
import { parse as parseXml, type Element } from 'ltx';
import { dateFromColumn } from '../../server/storage/column-values';
import { STORAGE_LIMITS, assertFits } from '../../server/storage/limits';
import { inWriteTransaction } from '../../server/storage/write-transaction';
import type { Affiliation } from './affiliations';
import type { HistoryEntry } from './history';
import type { RoomConfig } from './room-config';

export interface StoredAffiliation {
  jid: string;
  affiliation: Exclude<Affiliation, 'none'>;
  nick?: string;
  reason?: string;
}

export interface Subject {
  text: string;
  /** The nick that set it (empty: the room itself). */
  nick: string;
  stamp: Date;
}

export interface StoredRoom {
  jid: string;
  configJson: string;
  subject?: Subject;
  createdAt: Date;
  affiliations: StoredAffiliation[];
  history: HistoryEntry[];
}

/**
 * Persistent rooms in the shared database (migration 003-muc). Only persistent rooms are
 * written; every node reads them, so a room survives the loss of the node that served it.
 */
export class MucStore {
  constructor(private readonly knex: Knex) {}

  async load(jid: string, historyLimit: (configJson: string) => number): Promise<StoredRoom | undefined> {
    const row: { jid: string; config: string; subject: string | null; subject_nick: string | null; subject_at: unknown; created_at: unknown } | undefined =
      await this.knex('muc_rooms').where({ jid }).first('jid', 'config', 'subject', 'subject_nick', 'subject_at', 'created_at');
    if (!row) return undefined;
    const affiliations: { jid: string; affiliation: StoredAffiliation['affiliation']; nick: string | null; reason: string | null }[] =
      await this.knex('muc_affiliations').where({ room: jid }).select('jid', 'affiliation', 'nick', 'reason');
    const limit = historyLimit(row.config);
    const history: { nick: string; sender: string; stanza: string; stamp: unknown }[] =
      limit > 0 ? await this.knex('muc_history').where({ room: jid }).orderBy('id', 'desc').limit(limit).select('nick', 'sender', 'stanza', 'stamp') : [];
    return {
      jid: row.jid,
      configJson: row.config,
      subject:
        row.subject === null
          ? undefined
          : { text: row.subject, nick: row.subject_nick ?? '', stamp: row.subject_at ? dateFromColumn(row.subject_at) : dateFromColumn(row.created_at) },
      createdAt: dateFromColumn(row.created_at),
      affiliations: affiliations.map((a) => ({ jid: a.jid, affiliation: a.affiliation, nick: a.nick ?? undefined, reason: a.reason ?? undefined })),
      history: history.reverse().map((h) => ({ nick: h.nick, sender: h.sender, stanza: parseXml(h.stanza) as Element, stamp: dateFromColumn(h.stamp) })),
    };
  }

  /** Writes the whole room (it just became persistent, or was created so): row, affiliations, history. */
  async save(room: StoredRoom, config: RoomConfig, domain: string): Promise<void> {
    assertFits('room JID', room.jid, STORAGE_LIMITS.jid);
    await inWriteTransaction(this.knex, async (trx) => {
      await trx('muc_rooms')
        .insert({
          jid: room.jid,
          domain,
          public: config.public,
          name: config.name,
          config: room.configJson,
          subject: room.subject?.text ?? null,
          subject_nick: room.subject?.nick ?? null,
          subject_at: room.subject?.stamp ?? null,
          created_at: room.createdAt,
        })
        .onConflict('jid')
        .merge();
      await trx('muc_affiliations').where({ room: room.jid }).delete();
      for (const a of room.affiliations) {
        await trx('muc_affiliations').insert({ room: room.jid, jid: a.jid, affiliation: a.affiliation, nick: a.nick ?? null, reason: a.reason ?? null });
      }
      await trx('muc_history').where({ room: room.jid }).delete();
      for (const h of room.history) {
        await trx('muc_history').insert({ room: room.jid, nick: h.nick, sender: h.sender, stanza: h.stanza.toString(), stamp: h.stamp });
      }
    });
  }

  async saveConfig(jid: string, config: RoomConfig): Promise<void> {
    await this.knex('muc_rooms').where({ jid }).update({ config: JSON.stringify(config), public: config.public, name: config.name });
  }

  async saveSubject(jid: string, subject: Subject): Promise<void> {
    await this.knex('muc_rooms').where({ jid }).update({ subject: subject.text, subject_nick: subject.nick, subject_at: subject.stamp });
  }

  async setAffiliation(room: string, jid: string, affiliation: Affiliation, reason?: string, nick?: string): Promise<void> {
    assertFits('JID', jid, STORAGE_LIMITS.jid);
    if (affiliation === 'none') {
      await this.knex('muc_affiliations').where({ room, jid }).delete();
      return;
    }
    await this.knex('muc_affiliations')
      .insert({ room, jid, affiliation, reason: reason ?? null, nick: nick ?? null })
      .onConflict(['room', 'jid'])
      .merge();
  }

  /** Appends a message and drops what is beyond the newest `keep` rows. */
  async addHistory(room: string, entry: HistoryEntry, keep: number): Promise<void> {
    await this.knex('muc_history').insert({ room, nick: entry.nick, sender: entry.sender, stanza: entry.stanza.toString(), stamp: entry.stamp });
    await this.trimHistory(room, keep);
  }

  async trimHistory(room: string, keep: number): Promise<void> {
    // Two statements: MySQL refuses a DELETE whose subquery reads the same table.
    const boundary: { id: number } | undefined = await this.knex('muc_history').where({ room }).orderBy('id', 'desc').offset(keep).first('id');
    if (boundary) await this.knex('muc_history').where({ room }).andWhere('id', '<=', boundary.id).delete();
  }

  async delete(jid: string): Promise<void> {
    await inWriteTransaction(this.knex, async (trx) => {
      await trx('muc_history').where({ room: jid }).delete();
      await trx('muc_affiliations').where({ room: jid }).delete();
      await trx('muc_rooms').where({ jid }).delete();
    });
  }

  /** Persistent public rooms of `domain` (disco#items), by JID. */
  async publicRooms(domain: string): Promise<{ jid: string; name: string }[]> {
    const rows: { jid: string; name: string | null }[] = await this.knex('muc_rooms').where({ domain, public: true }).orderBy('jid').select('jid', 'name');
    return rows.map((r) => ({ jid: r.jid, name: r.name ?? '' }));
  }

  /** The node that holds the claim on a room (component_owners, see server/cluster/ownership.ts), read afresh. */
  async claimedOwner(service: string, room: string): Promise<string | undefined> {
    const row: { node: string } | undefined = await this.knex('component_owners').where({ service, item: room }).first('node');
    return row?.node;
  }
}
