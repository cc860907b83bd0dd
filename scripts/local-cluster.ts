import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { databaseKindOf } from '../server/storage/database-uri';

const USAGE = `usage: npm run cluster -- [NODES] [--db=URI] [--strategy=NAME] [--key=value ...]
Starts NODES (default 3) cluster nodes on this machine, sharing one database, for development.
  --db=URI        shared database [sqlite:var/cluster/cluster.sqlite]; e.g. mysql://root@127.0.0.1:3306/xmpp_cluster
  --strategy=NAME broadcast | online-users-caching | ./path/to/strategy.js [broadcast]
  other --key=value options are passed to every node (see etc/init.properties)
Node i (1..NODES) listens on c2s 5222+100(i-1), direct TLS 5223+100(i-1), WebSocket 5290+100(i-1),
BOSH 5280+100(i-1), server-to-server 5269+100(i-1) and 5270+100(i-1), HTTP 8080+(i-1), cluster 5777+(i-1),
and is called node<i>.local-cluster.`;

const ROOT = path.resolve(__dirname, '..', '..');

function main(argv: string[]): void {
  let nodes = 3;
  let db = 'sqlite:var/cluster/cluster.sqlite';
  let strategy = 'broadcast';
  const extra: string[] = [];
  for (const arg of argv) {
    if (/^\d+$/.test(arg)) nodes = Number(arg);
    else if (arg.startsWith('--db=')) db = arg.slice('--db='.length);
    else if (arg.startsWith('--strategy=')) strategy = arg.slice('--strategy='.length);
    else if (arg === '--help' || arg === '-h') return void console.log(USAGE);
    else if (arg.startsWith('--') && arg.includes('=')) extra.push(arg);
    else {
      console.error(`unknown argument: ${arg}\n${USAGE}`);
      process.exit(2);
    }
  }
  if (nodes < 1 || nodes > 9) {
    console.error('between 1 and 9 nodes');
    process.exit(2);
  }
  const children: ChildProcess[] = [];
  for (let i = 0; i < nodes; i++) {
    const name = `node${i + 1}.local-cluster`;
    const args = [
      path.join(ROOT, 'dist', 'server', 'main.js'),
      '--config', path.join(ROOT, 'etc', 'init.properties'),
      '--cluster-mode=true',
      `--cluster-hostname=${name}`,
      '--cluster-address=127.0.0.1',
      `--cluster-port=${5777 + i}`,
      `--c2s-ports=${5222 + 100 * i}`,
      `--c2s-ssl-ports=${5223 + 100 * i}`,
      `--s2s-ports=${5269 + 100 * i}`,
      `--s2s-ssl-ports=${5270 + 100 * i}`,
      `--ws-ports=${5290 + 100 * i}`,
      `--bosh-ports=${5280 + 100 * i}`,
      `--http-port=${8080 + i}`,
      `--user-db=${databaseKindOf(db) ?? 'sqlite'}`,
      `--user-db-uri=${db}`,
      `--data-dir=var/cluster/node${i + 1}`,
      `--sm-cluster-strategy-class=${strategy}`,
      `--min-cluster-nodes=${nodes}`,
      ...extra,
    ];
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const prefix = `[node${i + 1}] `;
    for (const stream of [child.stdout!, child.stderr!]) {
      let pending = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        pending += chunk;
        const lines = pending.split('\n');
        pending = lines.pop() ?? '';
        for (const line of lines) console.log(prefix + line);
      });
    }
    child.on('exit', (code, signal) => console.log(`${prefix}exited (${signal ?? code})`));
    children.push(child);
  }
  const stop = () => {
    for (const child of children) child.kill('SIGTERM');
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main(process.argv.slice(2));
