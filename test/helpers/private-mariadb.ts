import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, appendFileSync, closeSync, constants, openSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { delimiter, join } from 'node:path';
import mysql from 'mysql2/promise';
import type { TapTest } from './databases';

/**
 * A MariaDB server of one test's own, for tests that take the database down and bring it back
 * (the shared server on 3306 must never be stopped). Same port and data across stop/start.
 */
export interface PrivateMariaDb {
  /** `mysql://root@127.0.0.1:PORT`: root, no password, no database. */
  uri: string;
  port: number;
  /** Normal shutdown (SIGTERM), SIGKILL if it takes longer than 30 s; resolves once the process has exited. */
  stop(): Promise<void>;
  /** A crash (SIGKILL); the next start() runs InnoDB crash recovery. Resolves once the process has exited. */
  kill(): Promise<void>;
  /** Starts it again on the same port and data dir; resolves once it answers a query. */
  start(): Promise<void>;
}

/** One mariadbd process and the moment it is gone. */
interface Running {
  proc: ChildProcess;
  exited: Promise<void>;
}

/** CI sets this so that a missing MySQL fails the run instead of skipping half of it (as databases.ts). */
const REQUIRE_MYSQL = process.env.XMPP_TEST_REQUIRE_MYSQL === '1';
/** Longest wait for a started server to answer [60000 ms]; a cold start here takes well under a second. */
const READY_DEADLINE_MS = 60_000;
/** Pause between readiness probes [100 ms]. */
const READY_POLL_MS = 100;
/** Longest wait for a normal shutdown before SIGKILL [30000 ms]. */
const STOP_DEADLINE_MS = 30_000;
/** Fresh ports tried when another process takes ours between probing and binding [3]. */
const BIND_ATTEMPTS = 3;
/** Data dirs untouched for this long, with no live server, were left by a killed test [1 hour]. */
const ABANDONED_AFTER_MS = 3_600_000;
const DIR_PREFIX = 'xmpp-mariadb-';

let swept: Promise<void> | undefined;

/**
 * Small buffers so that install and start take a fraction of a second and the data dir stays ~20 MB
 * (the defaults write a 96 MB redo log). 2M is the smallest log buffer MariaDB 10.11 accepts.
 */
const SMALL_SERVER = ['--innodb-buffer-pool-size=16M', '--innodb-log-file-size=4M', '--innodb-log-buffer-size=2M'];

/**
 * Initialises a data dir under os.tmpdir() and starts mariadbd on 127.0.0.1 on a free port; the
 * server is killed and the dir removed when `t` ends. Returns undefined (and says why in a comment)
 * when MariaDB is not installed, unless XMPP_TEST_REQUIRE_MYSQL=1, where it throws instead.
 */
export async function startPrivateMariaDb(t: TapTest): Promise<PrivateMariaDb | undefined> {
  const binaries = findMariaDb();
  if (typeof binaries === 'string') {
    if (REQUIRE_MYSQL) throw new Error(`private MariaDB: ${binaries} and XMPP_TEST_REQUIRE_MYSQL=1`);
    t.comment(`private MariaDB: ${binaries}; skipping`);
    return undefined;
  }
  const { mariadbd, installDb } = binaries;

  swept ??= sweepAbandonedDirs();
  await swept;
  const dir = await mkdtemp(join(tmpdir(), DIR_PREFIX));
  const datadir = join(dir, 'data');
  const log = join(dir, 'mariadbd.log');
  let running: Running | undefined;
  t.teardown(async () => {
    await stopWith('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  // Run as whoever we are: root needs --user=root, and keeping the uid keeps the parent-death signal.
  const user = userInfo().username;
  // --no-defaults first, always: /etc/mysql/my.cnf describes the shared server (its port and socket).
  await run(installDb, [
    '--no-defaults', `--datadir=${datadir}`, `--user=${user}`, '--auth-root-authentication-method=normal',
    '--skip-test-db', '--skip-name-resolve', ...SMALL_SERVER,
  ], join(dir, 'install.log'));

  let port = 0;

  async function launch(): Promise<void> {
    // Without --log-error mariadbd logs to stderr: one file, appended to across restarts.
    const proc = spawnDyingWithUs(mariadbd, [
      '--no-defaults', `--user=${user}`, `--datadir=${datadir}`, `--socket=${join(dir, 'mariadbd.sock')}`,
      `--pid-file=${join(dir, 'mariadbd.pid')}`, `--port=${port}`, '--bind-address=127.0.0.1', '--skip-name-resolve',
      '--skip-log-bin', ...SMALL_SERVER,
    ], log);
    const self: Running = { proc, exited: new Promise((resolve) => proc.once('close', () => resolve())) };
    running = self;
    void self.exited.then(() => {
      if (running === self) running = undefined;
    });
    await waitUntilAnswering(self);
  }

  async function waitUntilAnswering({ proc, exited }: Running): Promise<void> {
    let gone = false;
    void exited.then(() => (gone = true));
    const deadline = Date.now() + READY_DEADLINE_MS;
    let lastError: unknown;
    while (Date.now() < deadline) {
      if (gone) throw new Error(`private MariaDB on port ${port} exited during start-up (${proc.exitCode ?? proc.signalCode}): ${logTail(log)}`);
      try {
        const conn = await mysql.createConnection({ host: '127.0.0.1', port, user: 'root', connectTimeout: 2000 });
        try {
          await conn.query('SELECT 1');
          return;
        } finally {
          await conn.end().catch(() => undefined);
        }
      } catch (err) {
        lastError = err;
      }
      await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
    }
    await stopWith('SIGKILL');
    throw new Error(`private MariaDB on port ${port} did not answer within ${READY_DEADLINE_MS} ms (${String(lastError)}): ${logTail(log)}`);
  }

  async function stopWith(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    if (!running) return;
    const { proc, exited } = running;
    proc.kill(signal);
    const timer = signal === 'SIGTERM' ? setTimeout(() => proc.kill('SIGKILL'), STOP_DEADLINE_MS) : undefined;
    try {
      await exited;
    } finally {
      clearTimeout(timer);
    }
  }

  // The first port can be taken by someone else between the probe and mariadbd's bind.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      await launch();
      break;
    } catch (err) {
      // The log holds this attempt only: a failed one is removed below.
      if (attempt >= BIND_ATTEMPTS || !/Bind on TCP\/IP port/.test(readFileSync(log, 'utf8'))) throw err;
      t.comment(`private MariaDB: port ${port} was taken before mariadbd bound it; trying another`);
      await rm(log, { force: true });
    }
  }

  return {
    uri: `mysql://root@127.0.0.1:${port}`,
    port,
    stop: () => stopWith('SIGTERM'),
    kill: () => stopWith('SIGKILL'),
    async start() {
      if (running) throw new Error(`private MariaDB on port ${port} is already running`);
      await launch();
    },
  };
}

/**
 * A test process killed mid-run never runs its teardown: its server dies with it (spawnDyingWithUs)
 * but its ~20 MB dir stays. Removes such dirs once they are an hour old and their pid file names no
 * live process; a running test's dir is younger.
 */
async function sweepAbandonedDirs(): Promise<void> {
  const names = (await readdir(tmpdir())).filter((name) => name.startsWith(DIR_PREFIX));
  for (const name of names) {
    const dir = join(tmpdir(), name);
    const modified = await stat(dir).then((s) => s.mtimeMs, () => Date.now());
    if (Date.now() - modified < ABANDONED_AFTER_MS) continue;
    // mariadbd removes its pid file on a normal shutdown; a crash or SIGKILL leaves it.
    const pid = readPid(join(dir, 'mariadbd.pid'));
    if (pid !== undefined && processAlive(pid)) continue;
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Spawns `file` so that the kernel kills it when this process dies, even by SIGKILL or a tap
 * timeout that never runs teardowns: util-linux's setpriv sets PR_SET_PDEATHSIG and execs, so the
 * pid stays mariadbd's. Without setpriv, a server outlives a killed test (teardown still covers the rest).
 */
function spawnDyingWithUs(file: string, args: string[], logFile: string): ChildProcess {
  const setpriv = findExecutable('setpriv', ['/usr/bin', '/bin']);
  return spawnLogged(setpriv ?? file, setpriv ? ['--pdeathsig', 'KILL', '--', file, ...args] : args, logFile);
}

/** Runs a command to completion, its output going to `logFile`; rejects with the log's tail on failure. */
async function run(file: string, args: string[], logFile: string): Promise<void> {
  const proc = spawnLogged(file, args, logFile);
  const code = await new Promise<number | string>((resolve) => {
    proc.once('close', (code, signal) => resolve(code ?? signal ?? 'unknown'));
  });
  if (code !== 0) throw new Error(`${file} failed (${code}): ${logTail(logFile)}`);
}

/**
 * spawn with stdout and stderr appended to `logFile`. A failure to spawn (ENOENT) is logged there
 * and ends as 'close', so callers wait on one event; the listener also keeps it from crashing the process.
 */
function spawnLogged(file: string, args: string[], logFile: string): ChildProcess {
  const out = openSync(logFile, 'a');
  try {
    const proc = spawn(file, args, { stdio: ['ignore', out, out] });
    proc.on('error', (err) => appendFileSync(logFile, `spawn ${file}: ${err.message}\n`));
    return proc;
  } finally {
    closeSync(out);
  }
}

/** A port the kernel says is free now (as test/helpers/server.ts, which would drag the whole server in). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Both MariaDB programs, or why not: mariadb-install-db comes with mariadbd in mariadb-server-core. */
function findMariaDb(): { mariadbd: string; installDb: string } | string {
  const mariadbd = findExecutable('mariadbd', ['/usr/sbin', '/usr/local/sbin']);
  const installDb = findExecutable('mariadb-install-db', ['/usr/bin', '/usr/local/bin']);
  if (mariadbd && installDb) return { mariadbd, installDb };
  return `${mariadbd ? 'mariadb-install-db' : 'mariadbd'} not found (apt-get install mariadb-server)`;
}

/** The first executable `name` on PATH or in `extraDirs` (sbin is often not on a test's PATH). */
function findExecutable(name: string, extraDirs: string[]): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...extraDirs];
  for (const d of dirs) {
    try {
      accessSync(join(d, name), constants.X_OK);
      return join(d, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The last lines of a log, on one line, for error messages. */
function logTail(file: string, lines = 5): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join(' | ');
  } catch {
    return '(no log)';
  }
}
