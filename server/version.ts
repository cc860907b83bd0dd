import { readFileSync } from 'node:fs';
import path from 'node:path';

export const SERVER_NAME = 'xmpp-cluster-server';

/** The package version (package.json sits two folders up from both server/ and dist/server/). */
export const SERVER_VERSION: string = (() => {
  for (const candidate of [path.join(__dirname, '..', 'package.json'), path.join(__dirname, '..', '..', 'package.json')]) {
    try {
      return JSON.parse(readFileSync(candidate, 'utf8')).version as string;
    } catch {
      // try the next location
    }
  }
  return '0.0.0';
})();
