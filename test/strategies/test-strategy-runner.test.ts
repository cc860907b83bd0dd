import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';

const ROOT = path.join(__dirname, '..', '..');
const RUNNER = path.join(ROOT, 'dist', 'scripts', 'test-strategy.js');
const EXAMPLE = path.join(ROOT, 'strategies', 'examples', 'least-known-nodes.js');

/** A strategy that breaks one promise: it lists this node itself among the destinations. */
const LISTS_LOCAL_NODE = `
class ListsLocalNode {
  constructor(ctx) { this.ctx = ctx; this.name = 'lists-local-node'; this.knowsRemoteSessions = false; }
  nodesForUser() { return [this.ctx.localNode, ...this.ctx.connectedNodes()]; }
  nodesForResource() { return this.ctx.connectedNodes(); }
  remoteResources() { return []; }
  sessionEvent() {}
  nodeJoined() {}
  nodeLeft() {}
  snapshot() { return []; }
  stats() { return {}; }
}
module.exports = ListsLocalNode;
`;

function newestSource(target: string): number {
  if (!statSync(target).isDirectory()) return statSync(target).mtimeMs;
  let newest = 0;
  for (const entry of readdirSync(target)) newest = Math.max(newest, newestSource(path.join(target, entry)));
  return newest;
}

function runnerIsFresh(): boolean {
  const sources = Math.max(newestSource(path.join(ROOT, 'strategies')), newestSource(path.join(ROOT, 'scripts', 'test-strategy.ts')));
  return existsSync(RUNNER) && statSync(RUNNER).mtimeMs >= sources;
}

/** The runner as a strategy author starts it, without the environment tap gives this test. */
function runner(args: string[], cwd: string, env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !/^(TAP|_TAPJS_)|^NODE_OPTIONS$|^npm_lifecycle_event$|^INIT_CWD$/.test(key)),
  );
  return new Promise((resolve) => {
    execFile(process.execPath, [RUNNER, ...args], { cwd, env: { ...inherited, ...env }, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

t.before(() => {
  if (runnerIsFresh()) return;
  t.comment('dist/ is missing or older than the sources: building');
  try {
    execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: ROOT, stdio: 'ignore', timeout: 180_000 });
  } catch {
    // tsc still writes dist/ when files elsewhere have type errors; freshness is checked below.
  }
});

t.test('npm run test:strategy runs the conformance suite against a module path', async (t) => {
  t.ok(runnerIsFresh(), 'dist/scripts/test-strategy.js is built from the current sources');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'test-strategy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'lists-local-node.js'), LISTS_LOCAL_NODE);
  copyFileSync(EXAMPLE, path.join(dir, 'copied-example.js'));

  t.test('a strategy that lists this node fails: exit 1, naming the broken promise', async (t) => {
    const run = await runner(['./lists-local-node.js'], dir);
    t.equal(run.code, 1);
    t.match(run.stdout, /not ok \d+ - [^\n]*this node \(node-a\) is never listed/);
    t.match(run.stdout, /nodesForUser\(alice@x\.example\)/, 'the failure shows the route that listed it');
  });

  t.test('the example strategy passes: exit 0', async (t) => {
    const run = await runner(['./strategies/examples/least-known-nodes.js'], ROOT);
    t.equal(run.code, 0, run.stdout.split('\n').filter((line) => line.includes('not ok')).join('\n'));
    t.notMatch(run.stdout, /not ok/);
    t.match(run.stdout, /# \{ total: \d+, pass: \d+ \}/);
  });

  t.test('started by npm, a relative path is resolved from where npm was run', async (t) => {
    const run = await runner(['./copied-example.js'], ROOT, { npm_lifecycle_event: 'test:strategy', INIT_CWD: dir });
    t.equal(run.code, 0, run.stderr);
  });

  t.test('no path, or no module at the path: exit 2 with the usage', async (t) => {
    const none = await runner([], dir);
    t.equal(none.code, 2);
    t.match(none.stderr, /usage: npm run test:strategy/);
    const missing = await runner(['./no-such-strategy.js'], dir);
    t.equal(missing.code, 2);
    t.match(missing.stderr, /no module at .*no-such-strategy\.js/);
  });
});
