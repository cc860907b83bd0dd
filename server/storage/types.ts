import type { Knex } from 'knex';
import type { CapsStore } from './caps-store';
import type { PubSubStore } from './pubsub-store';

/**
 * Storage is a set of narrow async stores over knex (STYLE §7). Users are addressed by their
 * prepared bare JID string ("user@domain"); every method is safe to call from several node
 * processes sharing one database.
 */

export type ScramHash = 'SHA-1' | 'SHA-256';

/** RFC 5802 §3 server-side credential: never the password itself. Binary values are base64. */
export interface ScramCredential {
  salt: string;
  iterations: number;
  storedKey: string;
  serverKey: string;
}

export type ScramCredentials = Record<ScramHash, ScramCredential>;

export interface UserRecord {
  jid: string;
  /** Both hashes' credentials, but for an account imported with one alone. */
  credentials: ScramCredentials;
  createdAt: Date;
  /** XEP-0133 disable-user: when the account was disabled; absent while it may log in. */
  disabledAt?: Date;
}

export class UserExistsError extends Error {
  readonly code = 'USER_EXISTS';
  constructor(jid: string) {
    super(`user ${jid} already exists`);
    this.name = 'UserExistsError';
  }
}

/**
 * A key value (JID, namespace) longer than its column holds (see STORAGE_LIMITS in limits.ts).
 * Raised the same way on SQLite and MySQL; callers answer it as bad input, not as a server fault.
 */
export class ValueTooLongError extends Error {
  readonly code = 'VALUE_TOO_LONG';
  constructor(readonly field: string, readonly maxLength: number) {
    super(`${field} is longer than ${maxLength} characters`);
    this.name = 'ValueTooLongError';
  }
}

export interface UserStore {
  /**
   * Throws UserExistsError when the JID is taken. Both credentials normally; one alone (an
   * import) leaves the other mechanism unusable for the account until its password is set again.
   */
  create(jid: string, credentials: ScramCredentials | Partial<ScramCredentials>): Promise<void>;
  get(jid: string): Promise<UserRecord | undefined>;
  /** Returns false when the user does not exist. */
  setCredentials(jid: string, credentials: ScramCredentials): Promise<boolean>;
  /** Deletes the account and everything stored for it (roster, offline, vcard, private, blocks). */
  delete(jid: string): Promise<boolean>;
  /** Bare JIDs, sorted; only those of `domain` when given; at most `limit` when given. */
  list(domain?: string, limit?: number): Promise<string[]>;
  /** How many accounts `domain` has (disabled ones included), and how many of them are disabled. */
  count(domain: string): Promise<{ registered: number; disabled: number }>;
  /** Disables (XEP-0133) or re-enables the accounts; returns those that exist. */
  setDisabled(jids: string[], disabled: boolean): Promise<string[]>;
}

export type Subscription = 'none' | 'to' | 'from' | 'both';

/** RFC 6121 §2.1.2 roster item, as stored. */
export interface RosterItem {
  jid: string;
  name?: string;
  subscription: Subscription;
  /** Outbound subscription request pending (the "ask" attribute). */
  ask?: boolean;
  /** RFC 6121 §3.4 subscription pre-approval. */
  approved?: boolean;
  groups: string[];
}

export interface RosterStore {
  getItems(user: string): Promise<RosterItem[]>;
  getItem(user: string, contact: string): Promise<RosterItem | undefined>;
  /** Insert or replace the item for item.jid. Bumps the roster version. */
  setItem(user: string, item: RosterItem): Promise<void>;
  /** Bumps the roster version when something was removed. */
  removeItem(user: string, contact: string): Promise<boolean>;
  /** Roster version (XEP-0237 / RFC 6121 §2.6): changes whenever the roster changes. */
  getVersion(user: string): Promise<string>;
  /** RFC 6121 §3.1.3: inbound subscription requests waiting for the user's decision. */
  addPendingIn(user: string, contact: string, stanzaXml: string): Promise<void>;
  removePendingIn(user: string, contact: string): Promise<boolean>;
  getPendingIn(user: string): Promise<{ contact: string; stanzaXml: string }[]>;
}

export interface OfflineMessage {
  id: number;
  stanzaXml: string;
  storedAt: Date;
}

export interface OfflineStore {
  /**
   * Appends a message for `user` unless the queue already holds `limit` messages (checked
   * atomically). Returns false when full.
   */
  store(user: string, stanzaXml: string, limit: number): Promise<boolean>;
  /** store() for many messages in one transaction; per item, whether it was stored. */
  storeMany(items: { user: string; stanzaXml: string }[], limit: number): Promise<boolean[]>;
  /** Which of `users` have stored messages. */
  usersWithMessages(users: string[]): Promise<string[]>;
  count(user: string): Promise<number>;
  /** Oldest first. */
  fetch(user: string): Promise<OfflineMessage[]>;
  /** Removes and returns the queue atomically (oldest first): concurrent takers never get the same message. */
  take(user: string): Promise<OfflineMessage[]>;
  /** Removes delivered messages. */
  remove(user: string, ids: number[]): Promise<void>;
  /** Total stored messages, for metrics. */
  total(): Promise<number>;
}

/** XEP-0049 private XML storage: one element per (user, namespace). */
export interface PrivateStore {
  get(user: string, namespace: string): Promise<string | undefined>;
  set(user: string, namespace: string, xml: string): Promise<void>;
  /** Everything `user` keeps, by namespace (XEP-0227 export). */
  all(user: string): Promise<{ namespace: string; xml: string }[]>;
}

/** XEP-0054 vcard-temp: one vCard element per user. */
export interface VCardStore {
  get(user: string): Promise<string | undefined>;
  set(user: string, xml: string): Promise<void>;
}

/** XEP-0191 block list. */
export interface BlockStore {
  list(user: string): Promise<string[]>;
  add(user: string, jids: string[]): Promise<void>;
  remove(user: string, jids: string[]): Promise<void>;
  clear(user: string): Promise<void>;
}

/**
 * Failed-authentication counter shared by every node (DESIGN: failed-auth attempts are counted
 * cluster-wide), keyed by bare JID.
 */
export interface AuthFailureStore {
  /** Records one failure and returns how many happened within the last `windowMs`. */
  record(key: string, windowMs: number): Promise<number>;
  /** Failures within the last `windowMs`. */
  count(key: string, windowMs: number): Promise<number>;
  /** Failures within the last `windowMs` of each key, in one query (0 for a key without any). */
  counts(keys: readonly string[], windowMs: number): Promise<number[]>;
  reset(key: string): Promise<void>;
}

/** One row of cluster_nodes (DESIGN: registry columns). Times are UTC. */
export interface ClusterNodeRow {
  hostname: string;
  secondary?: string;
  /** Random per start; peers key their link handshake with it. */
  password: string;
  lastUpdate: Date;
  port: number;
  cpuUsage: number;
  memUsage: number;
  address: string;
  version: string;
  startedAt: Date;
  connections: number;
  /** Set while the node drains before stopping (SIGTERM, xmppctl drain). */
  drainingSince?: Date;
}

export interface ClusterNodeStore {
  /** Insert or refresh a node's row. */
  upsert(row: ClusterNodeRow): Promise<void>;
  list(): Promise<ClusterNodeRow[]>;
  remove(hostname: string): Promise<boolean>;
  /** Deletes rows older than `cutoff`, except those of `keep` (nodes known alive); returns the hostnames deleted. */
  removeOlderThan(cutoff: Date, keep?: string[]): Promise<string[]>;
}

/** XEP-0357: an app server (JID and node) that wants to hear of messages for an account that is away. */
export interface PushRegistration {
  user: string;
  service: string;
  node: string;
  /** The publish-options data form the client gave (XML), passed on with each notification. */
  options?: string;
}

export interface PushStore {
  /** Adds, or replaces the options of, the (user, service, node) registration. */
  enable(registration: PushRegistration): Promise<void>;
  /** Removes the user's registrations at `service`: one node, or all of them; how many went. */
  disable(user: string, service: string, node?: string): Promise<number>;
  list(user: string): Promise<PushRegistration[]>;
}

/** XEP-0484: a FAST token as stored. The token itself is never stored, only its SHA-256. */
export interface FastToken {
  /** 'current': the token the client last logged in with; 'next': issued, not used yet. */
  slot: 'current' | 'next';
  /** The HT mechanism the token was issued for; it works with no other (XEP-0484 §3.1). */
  mechanism: string;
  /** SHA-256 of the token, hex. */
  keyHash: string;
  issuedAt: Date;
  expiresAt: Date;
}

export interface FastTokenStore {
  /** Stores a token issued to (user, client) as its 'next', replacing one that was never used. */
  issue(user: string, client: string, token: Omit<FastToken, 'slot'>): Promise<void>;
  /** The client's tokens that have not expired by `now`, 'next' first. */
  find(user: string, client: string, now: Date): Promise<FastToken[]>;
  /** The client logged in with its 'next' token (`keyHash`): it becomes 'current', the old one goes. */
  promote(user: string, client: string, keyHash: string): Promise<void>;
  /** Revokes one token, every token of a client, or every token of a user; how many went. */
  revoke(user: string, client?: string, keyHash?: string): Promise<number>;
  /** Deletes the tokens expired by `now`; how many went. */
  pruneExpired(now: Date): Promise<number>;
}

/** XEP-0313: one message as written into one user's archive. */
export interface ArchiveRow {
  user: string;
  stanzaId: string;
  /** The other party's bare JID, and resource when known. */
  withJid: string;
  withResource?: string;
  /** 'in': the user received it; 'out': the user sent it. */
  direction: 'in' | 'out';
  at: Date;
  /** The message as delivered (from and to stamped), serialised. */
  stanza: string;
}

export type ArchivedMessage = Omit<ArchiveRow, 'user'>;

/** XEP-0313 query filters (the form's fields). */
export interface ArchiveFilter {
  withJid?: string;
  withResource?: string;
  start?: Date;
  end?: Date;
  /** urn:xmpp:mam:2#extended */
  afterId?: string;
  beforeId?: string;
  ids?: string[];
}

export interface ArchivePage {
  messages: ArchivedMessage[];
  /** No more messages in the direction paged. */
  complete: boolean;
  /** All messages the filter matches. */
  count: number;
}

/** XEP-0313 §7 preferences: what is archived by default, and JIDs always or never archived. */
export interface ArchivePrefs {
  default: 'always' | 'never' | 'roster';
  always: string[];
  never: string[];
}

export interface ArchiveStore {
  append(rows: ArchiveRow[]): Promise<void>;
  /**
   * Where rows are written by a thread of the store's own (SQLite): takes rows as they are recorded
   * and commits them in batches, the oldest within 100 ms (at once with `now`); with `checkOwners`,
   * skips rows whose owner is no account or whose preferences (XEP-0313 §7) leave them out, as
   * MessageArchive does for the other stores. Resolves with how many rows were written.
   */
  enqueue?(rows: ArchiveRow[], checkOwners: boolean, now?: boolean): Promise<number>;
  /** A page of `user`'s archive; after/before are stanza ids (before: true is the last page). */
  query(user: string, filter: ArchiveFilter, page: { max: number; after?: string; before?: string | true }): Promise<ArchivePage | 'item-not-found'>;
  /** The oldest and newest messages of an archive (XEP-0313 metadata). */
  bounds(user: string): Promise<{ first?: ArchivedMessage; last?: ArchivedMessage }>;
  prefs(user: string): Promise<ArchivePrefs | undefined>;
  prefsOf(users: string[]): Promise<Map<string, ArchivePrefs>>;
  setPrefs(user: string, prefs: ArchivePrefs): Promise<void>;
  /** Deletes up to `limit` messages archived before `cutoff`; how many went. */
  removeOlderThan(cutoff: Date, limit: number): Promise<number>;
}

/** Cluster-wide chores: at most one node holds a lease at a time. */
export interface LeaseStore {
  /** Takes or renews `name` for `holder` for `ttlMs`; false while another node holds it. */
  acquire(name: string, holder: string, ttlMs: number): Promise<boolean>;
  /** Gives the lease up (a node stopping), so another takes it at once. */
  release(name: string, holder: string): Promise<void>;
  /** The node holding `name` now, if any. */
  holder(name: string): Promise<string | undefined>;
}

/** XEP-0363: an upload slot, and once PUT, its file. */
export interface UploadSlot {
  /** Random; the secret part of the file's URL. */
  id: string;
  user: string;
  filename: string;
  size: number;
  contentType: string;
  createdAt: Date;
  uploadedAt?: Date;
}

export interface UploadStore {
  createSlot(slot: Omit<UploadSlot, 'uploadedAt'>): Promise<void>;
  slot(id: string): Promise<UploadSlot | undefined>;
  /** Stores the file of a slot not yet used; false when it was used already. */
  store(id: string, data: Buffer): Promise<boolean>;
  /** The file's bytes, in order. */
  chunks(id: string): AsyncGenerator<Buffer>;
  /**
   * Bytes of a user's files, for quotas: uploaded ones, and slots created since `unusedSince` that
   * may still be uploaded to (an abandoned slot stops counting once it can no longer be used).
   */
  usage(user: string, unusedSince: Date): Promise<number>;
  /** Deletes up to `limit` slots (and their files) created before `cutoff`; how many went. */
  removeOlderThan(cutoff: Date, limit: number): Promise<number>;
  /** Deletes slots never used, created before `before`. */
  removeUnused(before: Date): Promise<number>;
}

export interface Storage {
  readonly kind: 'sqlite' | 'mysql' | 'pgsql';
  readonly knex: Knex;
  readonly users: UserStore;
  readonly roster: RosterStore;
  readonly offline: OfflineStore;
  readonly privateXml: PrivateStore;
  readonly vcards: VCardStore;
  readonly blocks: BlockStore;
  readonly authFailures: AuthFailureStore;
  readonly clusterNodes: ClusterNodeStore;
  /** XEP-0060 nodes and items of pubsub components and of PEP (XEP-0163). */
  readonly pubsub: PubSubStore;
  /** XEP-0115 verified entity capabilities, shared by every node. */
  readonly caps: CapsStore;
  /** XEP-0357 push registrations, shared by every node. */
  readonly push: PushStore;
  /** XEP-0484 FAST tokens, valid on every node. */
  readonly fastTokens: FastTokenStore;
  /** XEP-0313 message archives. */
  readonly archive: ArchiveStore;
  /** Leases of cluster-wide chores. */
  readonly leases: LeaseStore;
  /** XEP-0363 uploads. */
  readonly uploads: UploadStore;
  /** Runs pending migrations (also run by openStorage unless told not to). */
  migrate(): Promise<void>;
  /** True when the database answers. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}
