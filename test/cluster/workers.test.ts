import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { deriveScramCredentials } from '../../server/c2s/sasl/scram';
import { openStorage } from '../../server/storage/open-storage';
import { connectClient, type XmppClient } from '../helpers/client';
import { FAST_CLUSTER_ARGS, MAIN, eventually, httpGet } from '../helpers/cluster';
import type { TapTest } from '../helpers/databases';
import { freePort, freePortRange } from '../helpers/ports';
import { PASSWORD, collect, xml } from '../helpers/server';
import { visitOverTls } from '../helpers/tls-session';

const WAIT_MS = 60_000;
const USERS = 8;

// `--workers 2` on one machine with its embedded SQLite database, as `npm start` would run it: two
// node processes sharing the client port, each a cluster node of its own, messages crossing
// between them; a worker killed is restarted and its users come back; SIGTERM stops everything.
t.test('--workers 2: two nodes on one SQLite file share the client port; a dead worker is restarted', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xmpp-workers-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const dbUri = `sqlite:${path.join(dir, 'xmpp.sqlite')}`;
  const storage = await openStorage(dbUri);
  t.teardown(() => storage.close());
  for (let i = 0; i < USERS; i++) await storage.users.create(`w${i}@localhost`, deriveScramCredentials(PASSWORD, 4096));

  const c2s = await freePort();
  const http = await freePortRange(2);
  const clusterPort = await freePortRange(2);
  const primary = spawn(process.execPath, [
    MAIN,
    '--workers=2',
    '--virt-hosts=localhost',
    `--c2s-ports=${c2s}`, '--c2s-ssl-ports=0', '--s2s-ports=0', '--s2s-ssl-ports=0', '--ws-ports=0', '--bosh-ports=0',
    `--http-port=${http}`,
    `--cluster-port=${clusterPort}`,
    '--cluster-hostname=box.test',
    '--bind-address=127.0.0.1',
    `--user-db-uri=${dbUri}`,
    `--data-dir=${path.join(dir, 'var')}`,
    '--scram-iterations=4096',
    ...FAST_CLUSTER_ARGS,
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  primary.stdout!.on('data', (d) => (output += d));
  primary.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => primary.once('exit', (code) => resolve(code)));
  const clients: XmppClient[] = [];
  t.teardown(async () => {
    await Promise.all(clients.map((c) => c.stop().catch(() => undefined)));
    primary.kill('SIGKILL');
    // The workers end with their primary's IPC channel.
  });
  const health = async (worker: number) => {
    const res = await httpGet(http + worker - 1, '/health').catch(() => undefined);
    return res?.status === 200 ? (JSON.parse(res.body) as { clusterNodes: number }) : undefined;
  };
  const bothLinked = async () => (await health(1))?.clusterNodes === 2 && (await health(2))?.clusterNodes === 2;
  await eventually('both workers are up and linked to each other', bothLinked, WAIT_MS).catch((err) => {
    t.comment(output.slice(-3000));
    throw err;
  });

  t.same((await storage.clusterNodes.list()).map((r) => r.hostname).sort(), ['box.test-w1', 'box.test-w2'], 'each worker has its own cluster_nodes row');

  const login = async (i: number) => {
    const client = await connectClient({ service: `xmpp://127.0.0.1:${c2s}`, domain: 'localhost', local: `w${i}`, password: PASSWORD, resource: 'r' });
    clients.push(client);
    return client;
  };
  const sessionsOf = async (worker: number) => JSON.parse((await httpGet(http + worker - 1, '/status')).body).sessions as number;
  /** Everybody writes to everybody else; each message arrives once, from its sender. */
  const everybodyTalks = async (t: TapTest, users: XmppClient[], round: string) => {
    const inboxes = users.map((u) => collect(u));
    users.forEach((u, i) => users.forEach((_, j) => {
      if (i !== j) void u.send(xml('message', { to: `w${j}@localhost/r`, type: 'chat', id: `${round}-${i}-${j}` }, xml('body', {}, `${round} ${i}->${j}`)));
    }));
    const bodies = (j: number) => inboxes[j].filter((s) => s.is('message') && s.getChildText('body')?.startsWith(`${round} `)).map((s) => s.getChildText('body')!);
    await eventually(`every ${round} message arrives`, () => users.every((_, j) => bodies(j).length >= users.length - 1), WAIT_MS).catch(() => undefined);
    for (let j = 0; j < users.length; j++) {
      const expected = users.map((_, i) => `${round} ${i}->${j}`).filter((_, i) => i !== j).sort();
      t.same(bodies(j).sort(), expected, `w${j} got each ${round} message once`);
    }
  };

  const users: XmppClient[] = [];
  for (let i = 0; i < USERS; i++) users.push(await login(i));
  const [on1, on2] = [await sessionsOf(1), await sessionsOf(2)];
  t.equal(on1 + on2, USERS, 'every session is on one of the workers');
  t.ok(on1 > 0 && on2 > 0, `connections to the one port are spread over both workers (${on1} and ${on2})`);
  await everybodyTalks(t, users, 'first');

  // The workers share their TLS session ticket keys: a client coming back resumes its session
  // whichever worker its next connection reaches (the primary deals connections out in turn).
  const resumesEverywhere = async (what: string) => {
    const first = await visitOverTls(c2s, 'starttls');
    const visits = [];
    for (let i = 0; i < 6; i++) visits.push(await visitOverTls(c2s, 'starttls', first.ticket));
    t.same(visits.map((v) => v.reused), visits.map(() => true), what);
  };
  await resumesEverywhere('six connections with one ticket all resume their TLS session');

  // kill -9 of worker 2: its users lose their connection, the primary starts it again.
  const pidOf = (worker: number) => Number([...output.matchAll(new RegExp(`worker started.*worker=${worker}\\b.*pid=(\\d+)`, 'g'))].pop()?.[1]);
  const victim = pidOf(2);
  t.ok(victim > 0, 'the primary names each worker\'s process');
  const onVictim = await sessionsOf(2);
  process.kill(victim, 'SIGKILL');
  await eventually('the primary restarts the dead worker', () => pidOf(2) !== victim, WAIT_MS);
  await eventually('the new worker 2 is up and linked again', bothLinked, WAIT_MS);
  t.match(output, /worker died; restarting it/, 'the death is logged');
  const dropped = users.map((u, i) => (u.status === 'online' ? -1 : i)).filter((i) => i >= 0);
  t.equal(dropped.length, onVictim, 'the killed worker\'s users were disconnected, the others not');
  for (const i of dropped) users[i] = await login(i);
  await eventually('worker 2 serves again', async () => (await sessionsOf(1)) + (await sessionsOf(2)) === USERS, WAIT_MS);
  await everybodyTalks(t, users, 'second');
  await resumesEverywhere('the restarted worker has the same ticket keys');

  // SIGTERM to the primary: each worker stops cleanly and gives up its row.
  await Promise.all(clients.map((c) => c.stop().catch(() => undefined)));
  primary.kill('SIGTERM');
  t.equal(await exited, 0, 'the primary exits 0 once its workers have stopped');
  t.match(output, /all workers stopped/, 'and says so');
  t.same(await storage.clusterNodes.list(), [], 'no row left behind');
});
