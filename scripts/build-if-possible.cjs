// Builds dist/ with TypeScript when it is installed (a clone after `npm ci`). A release archive
// installed with `npm ci --omit=dev` has no TypeScript and ships dist/ built: nothing to do.
const { execFileSync } = require('node:child_process');
const { existsSync } = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
let tsc;
try {
  tsc = require.resolve('typescript/bin/tsc', { paths: [root] });
} catch {
  tsc = undefined;
}
if (tsc && existsSync(path.join(root, 'tsconfig.json'))) {
  execFileSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.json')], { stdio: 'inherit' });
} else if (!existsSync(path.join(root, 'dist', 'server', 'main.js'))) {
  process.stderr.write('dist/ is missing and TypeScript is not installed: run `npm ci` (with the development packages), or install a release archive (`npm run release`)\n');
  process.exit(1);
}
