/** Where the database lives, as parsed from `--user-db-uri`. */
export type DatabaseConfig =
  | { kind: 'sqlite'; filename: string }
  | { kind: 'mysql'; host: string; port: number; user: string; password: string; database: string };

const DEFAULT_MYSQL_PORT = 3306;
const DEFAULT_MYSQL_USER = 'root';
/** MySQL identifiers are at most 64 characters; we also refuse quotes and dots in a database name. */
const DATABASE_NAME = /^[A-Za-z0-9_$-]{1,64}$/;

const SUPPORTED =
  'expected sqlite:PATH, mysql://user:pass@host:port/db or jdbc:mysql://host:port/db?user=..&password=..';

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
 */
export function parseDatabaseUri(uri: string): DatabaseConfig {
  const trimmed = uri.trim();
  if (trimmed.startsWith('sqlite:')) {
    const filename = trimmed.slice('sqlite:'.length);
    if (filename === '') throw new Error(`database URI "${uri}" names no file: ${SUPPORTED}`);
    return { kind: 'sqlite', filename };
  }
  if (trimmed.startsWith('jdbc:mysql://')) return parseMysql(trimmed.slice('jdbc:'.length), uri, true);
  if (trimmed.startsWith('mysql://')) return parseMysql(trimmed, uri, false);
  throw new Error(`unsupported database URI "${redactPassword(uri)}": ${SUPPORTED}`);
}

function parseMysql(text: string, original: string, jdbc: boolean): DatabaseConfig {
  const shown = redactPassword(original);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`malformed database URI "${shown}": ${SUPPORTED}`);
  }
  // "mysql:" is not a WHATWG special scheme, so URL keeps host and path but does not validate them.
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw new Error(`database URI "${shown}" names no host`);
  let port = DEFAULT_MYSQL_PORT;
  if (url.port !== '') {
    port = Number(url.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new Error(`database URI "${shown}" has a bad port "${url.port}"`);
    }
  }
  const database = decodeComponent(url.pathname.replace(/^\//, ''), shown);
  if (database === '') throw new Error(`database URI "${shown}" names no database (…/DATABASE)`);
  if (!DATABASE_NAME.test(database)) {
    throw new Error(
      `database URI "${shown}" has an unusable database name "${database}" (letters, digits, _ $ - only)`,
    );
  }

  let user = decodeComponent(url.username, shown);
  let password = decodeComponent(url.password, shown);
  if (jdbc) {
    // URLSearchParams already percent-decodes.
    user = url.searchParams.get('user') ?? user;
    password = url.searchParams.get('password') ?? password;
  } else if (url.search !== '') {
    throw new Error(
      `database URI "${shown}" has query parameters, which mysql:// URIs do not take; ` +
        'put user and password before the host (mysql://user:pass@host/db)',
    );
  }
  return { kind: 'mysql', host, port, user: user || DEFAULT_MYSQL_USER, password, database };
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
