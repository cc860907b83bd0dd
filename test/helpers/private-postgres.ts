import { chown } from 'node:fs/promises';
import { readdirSync, readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { TapTest } from './databases';
import { findExecutable, startPrivateServer, type PrivateServer } from './private-server';

/** A PostgreSQL server of one test's own (private-server.ts); `uri` is `postgresql://postgres@127.0.0.1:PORT`. */
export type PrivatePostgres = PrivateServer;

/** PostgreSQL refuses to run as root; as root the server runs as this system user [postgres]. */
const SERVER_USER = 'postgres';

/** Debian keeps the server programs out of PATH, under /usr/lib/postgresql/<version>/bin. */
function serverBinDirs(): string[] {
  try {
    return readdirSync('/usr/lib/postgresql')
      .sort((a, b) => Number(b) - Number(a))
      .map((version) => `/usr/lib/postgresql/${version}/bin`);
  } catch {
    return [];
  }
}

// Small and quick: no fsync (a killed server still recovers from its WAL, which is what the tests
// take down; fsync only matters when the machine loses power), few connections.
const POSTGRES = {
  name: 'PostgreSQL',
  dirPrefix: 'xmpp-postgres-',
  pidFile: join('data', 'postmaster.pid'),
  requireVariable: 'XMPP_TEST_REQUIRE_PGSQL',
  find() {
    const initdb = findExecutable('initdb', serverBinDirs());
    const postgres = findExecutable('postgres', serverBinDirs());
    if (initdb && postgres) return { initdb, postgres };
    return `${initdb ? 'postgres' : 'initdb'} not found (apt-get install postgresql)`;
  },
  async init(dir: string, { initdb }: Record<string, string>, run: (file: string, args: string[]) => Promise<void>) {
    const root = userInfo().uid === 0;
    const args = ['-D', join(dir, 'data'), '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync'];
    if (root) {
      const { uid, gid } = systemUser(SERVER_USER);
      await chown(dir, uid, gid);
      const setpriv = findExecutable('setpriv', ['/usr/bin', '/bin']);
      if (!setpriv) throw new Error('private PostgreSQL: setpriv (util-linux) is needed to run initdb as postgres');
      await run(setpriv, [`--reuid=${SERVER_USER}`, `--regid=${SERVER_USER}`, '--init-groups', '--', initdb, ...args]);
    } else {
      await run(initdb, args);
    }
  },
  command(dir: string, port: number, { postgres }: Record<string, string>) {
    return {
      file: postgres,
      args: [
        '-D', join(dir, 'data'), '-p', String(port), '-h', '127.0.0.1', '-k', dir,
        '-c', 'fsync=off', '-c', 'max_connections=60', '-c', 'shared_buffers=16MB',
      ],
      user: userInfo().uid === 0 ? SERVER_USER : undefined,
    };
  },
  async probe(port: number) {
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 2000 });
    client.on('error', () => undefined);
    await client.connect();
    try {
      await client.query('SELECT 1');
    } finally {
      await client.end().catch(() => undefined);
    }
  },
  portTaken: /could not bind IPv4 address|Address already in use/,
  uri: (port: number) => `postgresql://postgres@127.0.0.1:${port}`,
};

/** uid and gid of a system user, from /etc/passwd. */
function systemUser(name: string): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${name}:`));
  if (!line) throw new Error(`private PostgreSQL: no system user ${name} to run the server as (apt-get install postgresql creates it)`);
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * Initialises a PostgreSQL data dir under os.tmpdir() and starts postgres on 127.0.0.1 on a free
 * port (as the postgres user when we are root); killed and removed when `t` ends. Undefined when
 * PostgreSQL is not installed, unless XMPP_TEST_REQUIRE_PGSQL=1, where it throws instead.
 */
export function startPrivatePostgres(t: TapTest): Promise<PrivatePostgres | undefined> {
  return startPrivateServer(t, POSTGRES);
}
