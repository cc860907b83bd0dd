import { userInfo } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import type { TapTest } from './databases';
import { findExecutable, startPrivateServer, type PrivateServer } from './private-server';

/** A MariaDB server of one test's own (private-server.ts); `uri` is `mysql://root@127.0.0.1:PORT`. */
export type PrivateMariaDb = PrivateServer;

/**
 * Small buffers so that install and start take a fraction of a second and the data dir stays ~20 MB
 * (the defaults write a 96 MB redo log). 2M is the smallest log buffer MariaDB 10.11 accepts.
 */
const SMALL_SERVER = ['--innodb-buffer-pool-size=16M', '--innodb-log-file-size=4M', '--innodb-log-buffer-size=2M'];

// Run as whoever we are: root needs --user=root, and keeping the uid keeps the parent-death signal.
// --no-defaults first, always: /etc/mysql/my.cnf describes the shared server (its port and socket).
const MARIADB = {
  name: 'MariaDB',
  dirPrefix: 'xmpp-mariadb-',
  pidFile: 'mariadbd.pid',
  requireVariable: 'XMPP_TEST_REQUIRE_MYSQL',
  find() {
    // mariadb-install-db comes with mariadbd in mariadb-server-core.
    const mariadbd = findExecutable('mariadbd', ['/usr/sbin', '/usr/local/sbin']);
    const installDb = findExecutable('mariadb-install-db', ['/usr/bin', '/usr/local/bin']);
    if (mariadbd && installDb) return { mariadbd, installDb };
    return `${mariadbd ? 'mariadb-install-db' : 'mariadbd'} not found (apt-get install mariadb-server)`;
  },
  async init(dir: string, { installDb }: Record<string, string>, run: (file: string, args: string[]) => Promise<void>) {
    await run(installDb, [
      '--no-defaults', `--datadir=${join(dir, 'data')}`, `--user=${userInfo().username}`, '--auth-root-authentication-method=normal',
      '--skip-test-db', '--skip-name-resolve', ...SMALL_SERVER,
    ]);
  },
  command(dir: string, port: number, { mariadbd }: Record<string, string>) {
    // Without --log-error mariadbd logs to stderr: one file, appended to across restarts.
    return {
      file: mariadbd,
      args: [
        '--no-defaults', `--user=${userInfo().username}`, `--datadir=${join(dir, 'data')}`, `--socket=${join(dir, 'mariadbd.sock')}`,
        `--pid-file=${join(dir, 'mariadbd.pid')}`, `--port=${port}`, '--bind-address=127.0.0.1', '--skip-name-resolve',
        '--skip-log-bin', ...SMALL_SERVER,
      ],
    };
  },
  async probe(port: number) {
    const conn = await mysql.createConnection({ host: '127.0.0.1', port, user: 'root', connectTimeout: 2000 });
    try {
      await conn.query('SELECT 1');
    } finally {
      await conn.end().catch(() => undefined);
    }
  },
  portTaken: /Bind on TCP\/IP port/,
  uri: (port: number) => `mysql://root@127.0.0.1:${port}`,
};

/**
 * Initialises a MariaDB data dir under os.tmpdir() and starts mariadbd on 127.0.0.1 on a free port;
 * killed and removed when `t` ends. Undefined when MariaDB is not installed, unless
 * XMPP_TEST_REQUIRE_MYSQL=1, where it throws instead.
 */
export function startPrivateMariaDb(t: TapTest): Promise<PrivateMariaDb | undefined> {
  return startPrivateServer(t, MARIADB);
}
