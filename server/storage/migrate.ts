import type { Knex } from 'knex';
import * as initial from './migrations/001-initial';
import * as componentOwners from './migrations/002-component-owners';
import * as muc from './migrations/003-muc';
import * as pubsub from './migrations/004-pubsub';
import * as push from './migrations/005-push';
import * as fastTokens from './migrations/006-fast-tokens';
import * as archive from './migrations/007-archive';
import * as leases from './migrations/008-leases';
import * as uploads from './migrations/009-uploads';
import * as disabledUsers from './migrations/010-disabled-users';
import * as drainingNodes from './migrations/011-draining-nodes';
import * as archiveIndexes from './migrations/012-archive-indexes';
import { isTransientConflict } from './sql-errors';
import type { StorageLogger } from './storage-logger';

interface NamedMigration {
  name: string;
  migration: Knex.Migration;
}

/**
 * Every migration, oldest first. Listed explicitly rather than found by scanning a directory: the
 * server runs compiled from dist/, and STYLE.md wants one visible list. Never rename or edit a
 * migration that has shipped; add the next file instead.
 */
const MIGRATIONS: readonly NamedMigration[] = [
  { name: '001-initial', migration: initial },
  { name: '002-component-owners', migration: componentOwners },
  { name: '003-muc', migration: muc },
  { name: '004-pubsub', migration: pubsub },
  { name: '005-push', migration: push },
  { name: '006-fast-tokens', migration: fastTokens },
  { name: '007-archive', migration: archive },
  { name: '008-leases', migration: leases },
  { name: '009-uploads', migration: uploads },
  { name: '010-disabled-users', migration: disabledUsers },
  { name: '011-draining-nodes', migration: drainingNodes },
  { name: '012-archive-indexes', migration: archiveIndexes },
];

class InCodeMigrationSource implements Knex.MigrationSource<NamedMigration> {
  async getMigrations(): Promise<NamedMigration[]> {
    return [...MIGRATIONS];
  }
  getMigrationName(m: NamedMigration): string {
    return m.name;
  }
  async getMigration(m: NamedMigration): Promise<Knex.Migration> {
    return m.migration;
  }
}

const MIGRATOR_CONFIG: Knex.MigratorConfig = {
  migrationSource: new InCodeMigrationSource(),
  tableName: 'knex_migrations',
  // Rolling upgrades (DESIGN.md): a node one version behind must still start after a newer node
  // applied migrations it does not know, so unknown rows in knex_migrations are not an error.
  disableMigrationsListValidation: true,
};

/** Cross-process mutual exclusion around a whole migration run. */
export interface MigrationLock {
  /** Waits for the lock and returns the function that releases it. */
  acquire(): Promise<() => Promise<void>>;
  /** True when holding it proves nobody else is migrating, so a set knex lock row is stale. */
  heldExclusively: boolean;
}

/** How long to keep retrying while another process holds knex's lock or SQLite's write lock [60000 ms]. */
const RETRY_GIVE_UP_MS = 60_000;

/**
 * Applies pending migrations. Several processes may call this at once on one database: MySQL
 * serialises them with `lock` (GET_LOCK); SQLite serialises them through its write lock (every knex
 * transaction is BEGIN IMMEDIATE, see sqlite-client.ts), and a loser that timed out retries.
 */
export async function migrateToLatest(knex: Knex, lock: MigrationLock | undefined, logger: StorageLogger): Promise<void> {
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      await migrateOnce(knex, lock, logger);
      return;
    } catch (err) {
      const lockedByKnex = (err as Error | undefined)?.name === 'MigrationLocked';
      if (!lockedByKnex && !isTransientConflict(err)) throw err;
      if (Date.now() - started > RETRY_GIVE_UP_MS) {
        throw new Error(
          lockedByKnex
            ? 'knex_migrations_lock stayed locked for 60 s; if no migration is running, clear it with ' +
                '"UPDATE knex_migrations_lock SET is_locked = 0" and start again'
            : `database stayed busy for 60 s while migrating: ${(err as Error).message}`,
        );
      }
      logger.info(`migration waiting for another process (${(err as Error).message})`);
      await sleep(Math.min(100 * attempt, 1000) * (0.5 + Math.random()));
    }
  }
}

async function migrateOnce(knex: Knex, lock: MigrationLock | undefined, logger: StorageLogger): Promise<void> {
  const release = lock ? await lock.acquire() : undefined;
  try {
    if (knex.client.dialect === 'sqlite3') await createKnexTablesSqlite(knex);
    if (lock?.heldExclusively) await freeStaleKnexLock(knex, logger);
    const [, applied]: [number, string[]] = await knex.migrate.latest(MIGRATOR_CONFIG);
    for (const name of applied) logger.info(`applied migration ${name}`);
    if (applied.length === 0) logger.debug('database schema is up to date');
  } finally {
    await release?.();
  }
}

/**
 * knex creates its bookkeeping tables with check-then-create, which races between processes: both
 * may create the lock table's row, and with two rows knex's "UPDATE ... WHERE is_locked = 0" never
 * matches exactly one, so every later migration fails as "already locked". These statements are
 * each atomic, create exactly what knex would, and leave knex nothing to create.
 */
async function createKnexTablesSqlite(knex: Knex): Promise<void> {
  await knex.raw(
    'CREATE TABLE IF NOT EXISTS "knex_migrations" (' +
      '"id" integer not null primary key autoincrement, "name" varchar(255), "batch" integer, "migration_time" datetime)',
  );
  await knex.raw(
    'CREATE TABLE IF NOT EXISTS "knex_migrations_lock" ("index" integer not null primary key autoincrement, "is_locked" integer)',
  );
  await knex.raw(
    'INSERT INTO "knex_migrations_lock" ("is_locked") SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM "knex_migrations_lock")',
  );
}

/** Only called while holding an exclusive MigrationLock: a set lock row was left by a crashed run. */
async function freeStaleKnexLock(knex: Knex, logger: StorageLogger): Promise<void> {
  if (!(await knex.schema.hasTable('knex_migrations_lock'))) return;
  const rows: { is_locked: number }[] = await knex('knex_migrations_lock').select('is_locked');
  if (rows.length === 1 && !rows[0].is_locked) return;
  logger.info('clearing knex_migrations_lock left behind by an interrupted migration');
  await knex.migrate.forceFreeMigrationsLock(MIGRATOR_CONFIG);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Names of every migration, in order (what knex_migrations holds once all have run). */
export const MIGRATION_NAMES: readonly string[] = MIGRATIONS.map((m) => m.name);
