import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, appendFileSync, closeSync, constants, openSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { TapTest } from './databases';
import { freePort, processAlive } from './ports';

/**
 * A database server of one test's own, for tests that take the database down and bring it back
 * (the shared servers must never be stopped). Same port and data across stop/start.
 */
export interface PrivateServer {
  /** Root or superuser, no password, no database: `mysql://root@127.0.0.1:PORT` or `postgresql://postgres@127.0.0.1:PORT`. */
  uri: string;
  port: number;
  /** Normal shutdown (SIGTERM), SIGKILL if it takes longer than 30 s; resolves once the process has exited. */
  stop(): Promise<void>;
  /** A crash (SIGKILL); the next start() runs crash recovery. Resolves once the process has exited. */
  kill(): Promise<void>;
  /** Starts it again on the same port and data dir; resolves once it answers a query. */
  start(): Promise<void>;
}

/** What differs between the servers: how to find, initialise, start and probe them. */
export interface ServerKind {
  /** "MariaDB", "PostgreSQL": for messages. */
  name: string;
  /** Prefix of the data dirs under os.tmpdir(). */
  dirPrefix: string;
  /** The name of its pid file in the dir (a live server's is never swept). */
  pidFile: string;
  /** The variable under which a missing server fails instead of skipping. */
  requireVariable: string;
  /** The programs it needs, or why they are missing. */
  find(): Record<string, string> | string;
  /** Creates the data dir `dir/data` and whatever else one start needs. */
  init(dir: string, programs: Record<string, string>, run: (file: string, args: string[]) => Promise<void>): Promise<void>;
  /** The program and its arguments to serve `dir` on 127.0.0.1:port. */
  command(dir: string, port: number, programs: Record<string, string>): { file: string; args: string[]; user?: string };
  /** Resolves once a query on 127.0.0.1:port succeeded; rejects otherwise. */
  probe(port: number): Promise<void>;
  /** Matches its log when the port was taken before it could bind. */
  portTaken: RegExp;
  uri(port: number): string;
}

/** One server process and the moment it is gone. */
interface Running {
  proc: ChildProcess;
  exited: Promise<void>;
}

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

const swept = new Map<string, Promise<void>>();

/**
 * Initialises a data dir under os.tmpdir() and starts the server on 127.0.0.1 on a free port; the
 * server is killed and the dir removed when `t` ends. Returns undefined (and says why in a comment)
 * when the server is not installed, unless its XMPP_TEST_REQUIRE_* variable is 1, where it throws.
 */
export async function startPrivateServer(t: TapTest, kind: ServerKind): Promise<PrivateServer | undefined> {
  const programs = kind.find();
  if (typeof programs === 'string') {
    if (process.env[kind.requireVariable] === '1') throw new Error(`private ${kind.name}: ${programs} and ${kind.requireVariable}=1`);
    t.comment(`private ${kind.name}: ${programs}; skipping`);
    return undefined;
  }
  if (!swept.has(kind.dirPrefix)) swept.set(kind.dirPrefix, sweepAbandonedDirs(kind));
  await swept.get(kind.dirPrefix);
  const dir = await mkdtemp(join(tmpdir(), kind.dirPrefix));
  const log = join(dir, 'server.log');
  let running: Running | undefined;
  t.teardown(async () => {
    await stopWith('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });
  await kind.init(dir, programs, (file, args) => run(file, args, join(dir, 'init.log')));

  let port = 0;

  async function launch(): Promise<void> {
    const { file, args, user } = kind.command(dir, port, programs as Record<string, string>);
    const proc = spawnDyingWithUs(file, args, log, user);
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
      if (gone) throw new Error(`private ${kind.name} on port ${port} exited during start-up (${proc.exitCode ?? proc.signalCode}): ${logTail(log)}`);
      try {
        await kind.probe(port);
        return;
      } catch (err) {
        lastError = err;
      }
      await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
    }
    await stopWith('SIGKILL');
    throw new Error(`private ${kind.name} on port ${port} did not answer within ${READY_DEADLINE_MS} ms (${String(lastError)}): ${logTail(log)}`);
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

  // The first port can be taken by someone else between the probe and the server's bind.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      await launch();
      break;
    } catch (err) {
      // The log holds this attempt only: a failed one is removed below.
      if (attempt >= BIND_ATTEMPTS || !kind.portTaken.test(readFileSync(log, 'utf8'))) throw err;
      t.comment(`private ${kind.name}: port ${port} was taken before it bound it; trying another`);
      await rm(log, { force: true });
    }
  }

  return {
    uri: kind.uri(port),
    port,
    stop: () => stopWith('SIGTERM'),
    kill: () => stopWith('SIGKILL'),
    async start() {
      if (running) throw new Error(`private ${kind.name} on port ${port} is already running`);
      await launch();
    },
  };
}

/**
 * A test process killed mid-run never runs its teardown: its server dies with it (spawnDyingWithUs)
 * but its dir stays. Removes such dirs once they are an hour old and their pid file names no live
 * process; a running test's dir is younger.
 */
async function sweepAbandonedDirs(kind: ServerKind): Promise<void> {
  const names = (await readdir(tmpdir())).filter((name) => name.startsWith(kind.dirPrefix));
  for (const name of names) {
    const dir = join(tmpdir(), name);
    const modified = await stat(dir).then((s) => s.mtimeMs, () => Date.now());
    if (Date.now() - modified < ABANDONED_AFTER_MS) continue;
    // Servers remove their pid file on a normal shutdown; a crash or SIGKILL leaves it.
    const pid = readPid(join(dir, kind.pidFile));
    if (pid !== undefined && processAlive(pid)) continue;
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

function readPid(file: string): number | undefined {
  try {
    // PostgreSQL's postmaster.pid has the pid on its first line; MariaDB's has nothing else.
    const pid = Number(readFileSync(file, 'utf8').split('\n')[0].trim());
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Spawns `file` so that the kernel kills it when this process dies, even by SIGKILL or a tap
 * timeout that never runs teardowns: util-linux's setpriv sets PR_SET_PDEATHSIG (after switching to
 * `user`, when given, since a change of user clears it) and execs, so the pid stays the server's.
 * Without setpriv, a server outlives a killed test (teardown still covers the rest).
 */
function spawnDyingWithUs(file: string, args: string[], logFile: string, user?: string): ChildProcess {
  const setpriv = findExecutable('setpriv', ['/usr/bin', '/bin']);
  if (user && !setpriv) throw new Error(`setpriv (util-linux) is needed to run ${file} as ${user}`);
  const as = user ? [`--reuid=${user}`, `--regid=${user}`, '--init-groups'] : [];
  return spawnLogged(setpriv ?? file, setpriv ? [...as, '--pdeathsig', 'KILL', '--', file, ...args] : args, logFile);
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

/** The first executable `name` on PATH or in `extraDirs` (sbin is often not on a test's PATH). */
export function findExecutable(name: string, extraDirs: string[]): string | undefined {
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
