import path from 'node:path';

const USAGE = `usage: npm run test:strategy -- ./my-strategy.js
  runs the ClusteringStrategy conformance suite against a strategy module (a path, resolved from
  the current directory) or a built-in strategy (broadcast, online-users-caching); exits 1 when a
  test fails, 2 on a usage error`;

const BUILT_IN = new Set(['broadcast', 'online-users-caching']);

/** npm runs scripts in the package root; INIT_CWD is where `npm run test:strategy` was typed. */
function workingDirectory(): string {
  const viaNpm = process.env.npm_lifecycle_event === 'test:strategy' && process.env.INIT_CWD;
  return viaNpm || process.cwd();
}

async function main(args: string[]): Promise<void> {
  if (args.length !== 1 || args[0].startsWith('-')) {
    console.error(USAGE);
    process.exitCode = 2;
    return;
  }
  let subject = args[0];
  if (!BUILT_IN.has(subject)) {
    try {
      subject = require.resolve(path.resolve(workingDirectory(), subject));
    } catch {
      console.error(`test-strategy: no module at ${path.resolve(workingDirectory(), subject)}\n${USAGE}`);
      process.exitCode = 2;
      return;
    }
  }
  // Loaded only now: tap's root test sets the exit code (1 when a test fails) as the process ends.
  const { default: t } = await import('tap');
  const { strategyConformance } = await import('../strategies/conformance');
  strategyConformance(t, subject);
}

void main(process.argv.slice(2));
