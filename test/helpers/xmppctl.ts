import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run } from '../../scripts/xmppctl';
import type { TestCluster } from './cluster';

export interface CtlResult {
  code: number;
  out: string[];
  err: string[];
}

/** Runs xmppctl's command line in this process with `--config file`; what it printed, line by line. */
export async function xmppctl(file: string, ...args: string[]): Promise<CtlResult> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...parts: unknown[]) => void out.push(...parts.join(' ').split('\n'));
  console.error = (...parts: unknown[]) => void err.push(...parts.join(' ').split('\n'));
  try {
    return { code: await run(['--config', file, ...args]), out, err };
  } finally {
    console.log = log;
    console.error = error;
  }
}

/** Runs xmppctl with a config file for node `index` of the cluster (its database and data folder, so its control socket). */
export async function ctl(cluster: TestCluster, index: number, ...args: string[]): Promise<CtlResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xmppctl-cluster-'));
  const file = path.join(dir, 'init.properties');
  writeFileSync(file, [`--virt-hosts = localhost`, `--user-db-uri = ${cluster.dbUri}`, `--data-dir = ${cluster.nodes[index].dataDir}`, ''].join('\n'));
  try {
    return await xmppctl(file, ...args);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
