import type { Knex } from 'knex';
import { KnexAuthFailureStore } from './auth-failure-store';
import { KnexBlockStore } from './block-store';
import { KnexCapsStore } from './caps-store';
import { KnexClusterNodeStore } from './cluster-node-store';
import { migrateToLatest, type MigrationLock } from './migrate';
import { KnexOfflineStore } from './offline-store';
import { KnexPrivateStore } from './private-store';
import { KnexPubSubStore } from './pubsub-store';
import { KnexPushStore } from './push-store';
import { KnexFastTokenStore } from './fast-token-store';
import { KnexArchiveStore } from './archive-store';
import { KnexLeaseStore } from './lease-store';
import { KnexUploadStore } from './upload-store';
import { KnexRosterStore } from './roster-store';
import type { SqliteArchiveWriter } from './sqlite-archive-writer';
import type { StorageLogger } from './storage-logger';
import type { Storage } from './types';
import { KnexUserStore } from './user-store';
import { KnexVCardStore } from './vcard-store';

/** How long ping() waits for `select 1`, pool wait included [2000 ms]. */
const PING_TIMEOUT_MS = 2000;

/** The stores over one knex instance; built by openStorage. */
export class KnexStorage implements Storage {
  readonly users: KnexUserStore;
  readonly roster: KnexRosterStore;
  readonly offline: KnexOfflineStore;
  readonly privateXml: KnexPrivateStore;
  readonly vcards: KnexVCardStore;
  readonly blocks: KnexBlockStore;
  readonly authFailures: KnexAuthFailureStore;
  readonly clusterNodes: KnexClusterNodeStore;
  readonly pubsub: KnexPubSubStore;
  readonly caps: KnexCapsStore;
  readonly push: KnexPushStore;
  readonly fastTokens: KnexFastTokenStore;
  readonly archive: KnexArchiveStore;
  readonly leases: KnexLeaseStore;
  readonly uploads: KnexUploadStore;
  /** Migrations of this instance run one after another; other processes are kept out by the lock. */
  private migrating: Promise<void> = Promise.resolve();

  constructor(
    readonly kind: 'sqlite' | 'mysql' | 'pgsql',
    readonly knex: Knex,
    private readonly migrationLock: MigrationLock | undefined,
    private readonly logger: StorageLogger,
    private readonly archiveWriter?: SqliteArchiveWriter,
  ) {
    this.users = new KnexUserStore(knex);
    this.roster = new KnexRosterStore(knex);
    this.offline = new KnexOfflineStore(knex);
    this.privateXml = new KnexPrivateStore(knex);
    this.vcards = new KnexVCardStore(knex);
    this.blocks = new KnexBlockStore(knex);
    this.authFailures = new KnexAuthFailureStore(knex);
    this.clusterNodes = new KnexClusterNodeStore(knex);
    this.pubsub = new KnexPubSubStore(knex);
    this.caps = new KnexCapsStore(knex);
    this.push = new KnexPushStore(knex);
    this.fastTokens = new KnexFastTokenStore(knex);
    this.archive = new KnexArchiveStore(knex, archiveWriter);
    this.leases = new KnexLeaseStore(knex);
    this.uploads = new KnexUploadStore(knex);
  }

  migrate(): Promise<void> {
    const run = this.migrating.then(() => migrateToLatest(this.knex, this.migrationLock, this.logger));
    this.migrating = run.catch(() => undefined);
    return run;
  }

  async ping(): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), PING_TIMEOUT_MS);
    });
    const query = this.knex.raw('select 1').then(
      () => true,
      (err: Error) => {
        this.logger.debug(`storage ping failed: ${err.message}`);
        return false;
      },
    );
    try {
      return await Promise.race([query, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    await this.archiveWriter?.close();
    await this.knex.destroy();
  }
}
