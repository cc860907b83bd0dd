'use strict';
/*
 * Preloaded into every test process (package.json, tap's node-arg): when a test requires the
 * server's TypeScript sources (server/, components/, strategies/, scripts/), it gets their compiled
 * JavaScript in dist/ instead, which `npm test` has just built. ts-node transpiled the whole server
 * again in every test process: about 3 s of CPU per file, close to half of the suite's CPU.
 *
 * All or nothing: when any source is newer than its build (or has none), nothing is redirected and
 * the sources are transpiled as before, so a module is never loaded twice from two places. Stack
 * traces still name the TypeScript lines (dist/ has source maps; tap enables them).
 */
const Module = require('node:module');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..');
const DIST = path.join(ROOT, 'dist');
const SOURCES = ['server', 'components', 'strategies', 'scripts'];

function compiledOf(file) {
  return path.join(DIST, path.relative(ROOT, file)).replace(/\.ts$/, '.js');
}

/** Every .ts source under `dir` has a build at least as new as itself. */
function built(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules' && !built(file)) return false;
    } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
      try {
        if (fs.statSync(compiledOf(file)).mtimeMs < fs.statSync(file).mtimeMs) return false;
      } catch {
        return false;
      }
    }
  }
  return true;
}

const roots = SOURCES.map((dir) => path.join(ROOT, dir)).filter((dir) => fs.existsSync(dir));
if (process.env.XMPP_TEST_FROM_SOURCES !== '1' && roots.every(built)) {
  const prefixes = roots.map((dir) => dir + path.sep);
  const resolve = Module._resolveFilename;
  Module._resolveFilename = function resolveCompiled(request, parent, isMain, options) {
    const file = resolve.call(this, request, parent, isMain, options);
    return file.endsWith('.ts') && prefixes.some((prefix) => file.startsWith(prefix)) ? compiledOf(file) : file;
  };
}
