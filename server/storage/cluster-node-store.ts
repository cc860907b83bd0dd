import type { Knex } from 'knex';
import { dateFromColumn } from './column-values';
import type { ClusterNodeRow, ClusterNodeStore } from './types';
import { inWriteTransaction } from './write-transaction';

/** The cluster_nodes table (DESIGN: registry), with Tigase's columns plus ours. */
export class KnexClusterNodeStore implements ClusterNodeStore {
  constructor(private readonly knex: Knex) {}

  async upsert(row: ClusterNodeRow): Promise<void> {
    const values = {
      hostname: row.hostname,
      secondary: row.secondary ?? null,
      password: row.password,
      last_update: row.lastUpdate,
      port: row.port,
      cpu_usage: row.cpuUsage,
      mem_usage: row.memUsage,
      address: row.address,
      version: row.version,
      started_at: row.startedAt,
      connections: row.connections,
      draining_since: row.drainingSince ?? null,
    };
    await this.knex('cluster_nodes').insert(values).onConflict('hostname').merge();
  }

  async list(): Promise<ClusterNodeRow[]> {
    const rows: Record<string, unknown>[] = await this.knex('cluster_nodes').select('*').orderBy('hostname');
    return rows.map((row) => ({
      hostname: String(row.hostname),
      secondary: row.secondary == null ? undefined : String(row.secondary),
      password: String(row.password),
      lastUpdate: dateFromColumn(row.last_update),
      port: Number(row.port),
      cpuUsage: Number(row.cpu_usage),
      memUsage: Number(row.mem_usage),
      address: String(row.address),
      version: String(row.version),
      startedAt: dateFromColumn(row.started_at),
      connections: Number(row.connections),
      drainingSince: row.draining_since == null ? undefined : dateFromColumn(row.draining_since),
    }));
  }

  /** Retried when another writer is in the way (SQLite nodes of one machine stopping together). */
  async remove(hostname: string): Promise<boolean> {
    return inWriteTransaction(this.knex, async (trx) => (await trx('cluster_nodes').where({ hostname }).delete()) > 0);
  }

  async removeOlderThan(cutoff: Date, keep: string[] = []): Promise<string[]> {
    const dead = (await this.list()).filter((row) => row.lastUpdate < cutoff && !keep.includes(row.hostname)).map((row) => row.hostname);
    // Only rows still stale at delete time go: a node that just came back keeps its row.
    for (const hostname of dead) await this.knex('cluster_nodes').where({ hostname }).andWhere('last_update', '<', cutoff).delete();
    return dead;
  }
}
