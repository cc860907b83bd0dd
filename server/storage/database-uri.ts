/** Where the database lives, as parsed from `--user-db-uri`. */
export type DatabaseConfig =
  | { kind: 'sqlite'; filename: string }
  | { kind: 'mysql'; host: string; port: number; user: string; password: string; database: string }
  | { kind: 'pgsql'; host: string; port: number; user: string; password: string; database: string; ssl: PgSslMode };

/**
 * PostgreSQL's sslmode, as libpq spells it: `disable` (plain TCP), `require` (TLS, any
 * certificate) or `verify-full` (TLS, a certificate trusted by the system's CAs and valid for the
 * host). libpq's `prefer` and `allow` fall back to plain TCP silently; we take no such mode.
 */
export type PgSslMode = 'disable' | 'require' | 'verify-full';
const PG_SSL_MODES: readonly PgSslMode[] = ['disable', 'require', 'verify-full'];

interface ServerDialect {
  kind: 'mysql' | 'pgsql';
  port: number;
  user: string;
  /** What the dialect's own identifiers allow: MySQL 64 characters, PostgreSQL 63 bytes. */
  maxName: number;
}

const MYSQL: ServerDialect = { kind: 'mysql', port: 3306, user: 'root', maxName: 64 };
const PGSQL: ServerDialect = { kind: 'pgsql', port: 5432, user: 'postgres', maxName: 63 };
/** Letters, digits, _ $ -: no quotes or dots in a database name. */
const DATABASE_NAME = /^[A-Za-z0-9_$-]+$/;

const SUPPORTED =
  'expected sqlite:PATH, mysql://user:pass@host:port/db, jdbc:mysql://host:port/db?user=..&password=.., ' +
  'postgresql://user:pass@host:port/db or jdbc:postgresql://host:port/db?user=..&password=..';

/**
 * Parses a database URI. Pure: relative SQLite paths are returned as written (openStorage resolves
 * them against the working directory). Throws an Error naming the problem on anything else.
 *
 * - `sqlite:var/xmpp.sqlite`, `sqlite:/abs/file.sqlite`, `sqlite::memory:`
 * - `mysql://user:pass@host:port/db` (user defaults to root, password to empty, port to 3306;
 *   user and password are percent-decoded)
 * - Tigase's `jdbc:mysql://host:port/db?user=..&password=..`. Other JDBC parameters
 *   (`useSSL`, `useUnicode`, `characterEncoding`, `autoCreateUser`, ...) tune Connector/J, not
 *   this server, and are ignored so that a Tigase init.properties line works unchanged.
 * - `postgresql://user:pass@host:port/db` (also `postgres://`; user defaults to postgres, port to
 *   5432), with an optional `?sslmode=disable|require|verify-full` [disable].
 * - Tigase's `jdbc:postgresql://host:port/db?user=..&password=..`; `sslmode` is read, other
 *   pgJDBC parameters are ignored, as for jdbc:mysql.
 */
export function parseDatabaseUri(uri: string): DatabaseConfig {
  const trimmed = uri.trim();
  if (trimmed.startsWith('sqlite:')) {
    const filename = trimmed.slice('sqlite:'.length);
    if (filename === '') throw new Error(`database URI "${uri}" names no file: ${SUPPORTED}`);
    return { kind: 'sqlite', filename };
  }
  if (trimmed.startsWith('jdbc:mysql://')) return parseServer(MYSQL, trimmed.slice('jdbc:'.length), uri, true);
  if (trimmed.startsWith('mysql://')) return parseServer(MYSQL, trimmed, uri, false);
  if (trimmed.startsWith('jdbc:postgresql://')) return parseServer(PGSQL, trimmed.slice('jdbc:'.length), uri, true);
  if (trimmed.startsWith('postgresql://') || trimmed.startsWith('postgres://')) return parseServer(PGSQL, trimmed, uri, false);
  throw new Error(`unsupported database URI "${redactPassword(uri)}": ${SUPPORTED}`);
}

/** The kind of database a URI names, from its scheme alone; undefined when no kind matches. */
export function databaseKindOf(uri: string): DatabaseConfig['kind'] | undefined {
  const trimmed = uri.trim();
  if (trimmed.startsWith('sqlite:')) return 'sqlite';
  if (/^(jdbc:)?mysql:\/\//.test(trimmed)) return 'mysql';
  if (/^(jdbc:postgresql|postgresql|postgres):\/\//.test(trimmed)) return 'pgsql';
  return undefined;
}

function parseServer(dialect: ServerDialect, text: string, original: string, jdbc: boolean): DatabaseConfig {
  const shown = redactPassword(original);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`malformed database URI "${shown}": ${SUPPORTED}`);
  }
  // "mysql:" and "postgresql:" are not WHATWG special schemes, so URL keeps host and path but does not validate them.
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw new Error(`database URI "${shown}" names no host`);
  let port = dialect.port;
  if (url.port !== '') {
    port = Number(url.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new Error(`database URI "${shown}" has a bad port "${url.port}"`);
    }
  }
  const database = decodeComponent(url.pathname.replace(/^\//, ''), shown);
  if (database === '') throw new Error(`database URI "${shown}" names no database (…/DATABASE)`);
  if (!DATABASE_NAME.test(database) || database.length > dialect.maxName) {
    throw new Error(
      `database URI "${shown}" has an unusable database name "${database}" (letters, digits, _ $ -, at most ${dialect.maxName})`,
    );
  }

  let user = decodeComponent(url.username, shown);
  let password = decodeComponent(url.password, shown);
  if (jdbc) {
    // URLSearchParams already percent-decodes.
    user = url.searchParams.get('user') ?? user;
    password = url.searchParams.get('password') ?? password;
  } else {
    const unknown = [...url.searchParams.keys()].filter((key) => dialect.kind !== 'pgsql' || key !== 'sslmode');
    if (unknown.length > 0) {
      const scheme = dialect.kind === 'mysql' ? 'mysql' : 'postgresql';
      throw new Error(
        `database URI "${shown}" has query parameters (${unknown.join(', ')}), which ${scheme}:// URIs do not take` +
          (dialect.kind === 'pgsql' ? ' (only sslmode)' : '') +
          `; put user and password before the host (${scheme}://user:pass@host/db)`,
      );
    }
  }
  if (dialect.kind === 'mysql') return { kind: 'mysql', host, port, user: user || dialect.user, password, database };
  const sslmode = url.searchParams.get('sslmode') ?? 'disable';
  if (!(PG_SSL_MODES as readonly string[]).includes(sslmode)) {
    throw new Error(`database URI "${shown}" has sslmode=${sslmode}; use ${PG_SSL_MODES.join(', ')}`);
  }
  return { kind: 'pgsql', host, port, user: user || dialect.user, password, database, ssl: sslmode as PgSslMode };
}

function decodeComponent(value: string, shown: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    throw new Error(`database URI "${shown}" has bad percent-encoding`);
  }
}

/** The URI with any password replaced by "***", for error messages and logs. */
export function redactPassword(uri: string): string {
  return uri
    .replace(/(\/\/[^:/@?#]*:)[^@/?#]*@/, '$1***@')
    .replace(/([?&]password=)[^&#]*/i, '$1***');
}
