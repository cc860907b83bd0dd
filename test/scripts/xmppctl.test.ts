import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { xmppctl as ctl } from '../helpers/xmppctl';
import { openStorage } from '../../server/storage/open-storage';
import { forEachDatabase, type TapTest } from '../helpers/databases';
import { startTestServer } from '../helpers/server';
import { SERVER_VERSION } from '../../server/version';

const ROOT = path.join(__dirname, '..', '..');

/** A temporary folder with an init.properties whose database is `dbUri`, by default a fresh SQLite file in it. */
function tempConfig(t: TapTest, hosts = 'localhost, example.org', uri?: string): { file: string; dbUri: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xmppctl-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const dbUri = uri ?? `sqlite:${path.join(dir, 'xmpp.sqlite')}`;
  const file = path.join(dir, 'init.properties');
  writeFileSync(
    file,
    [
      '# written by xmppctl.test.ts',
      `--virt-hosts = ${hosts}`,
      `--user-db-uri = ${dbUri}`,
      `--data-dir = ${dir}`,
      '--scram-iterations = 4096',
      '',
    ].join('\n'),
  );
  return { file, dbUri };
}

t.test('xmppctl commands', async (t) => {
  const { file, dbUri } = tempConfig(t);

  await t.test('adduser creates an account a real client logs in with', async (t) => {
    const added = await ctl(file, 'adduser', 'Alice@localhost', 'first-password');
    t.equal(added.code, 0);
    t.same(added.out, ['created alice@localhost'], 'says what it did, with the prepared JID');
    t.same(added.err, []);
    await t.test('a client logs in', async (t) => {
      const server = await startTestServer(t, { dbUri });
      const alice = await server.login('alice', { password: 'first-password' });
      t.equal(alice.jid?.bare().toString(), 'alice@localhost');
    });
  });

  await t.test('adding an existing account fails with exit code 1 and a one-line reason', async (t) => {
    const again = await ctl(file, 'adduser', 'alice@localhost', 'other-password');
    t.equal(again.code, 1);
    t.equal(again.err.length, 1, 'one line');
    t.match(again.err[0], /alice@localhost already exists/);
    t.same(again.out, []);
  });

  await t.test('a domain this server does not serve is refused', async (t) => {
    const foreign = await ctl(file, 'adduser', 'mallory@elsewhere.net', 'long-password');
    t.equal(foreign.code, 1);
    t.equal(foreign.err.length, 1);
    t.match(foreign.err[0], /elsewhere\.net is not served/);
    const listed = await ctl(file, 'listusers', 'elsewhere.net');
    t.equal(listed.code, 1, 'listusers of a domain not served is refused too');
    t.match(listed.err[0], /elsewhere\.net is not served/);
    const notAccount = await ctl(file, 'adduser', 'localhost', 'long-password');
    t.equal(notAccount.code, 1, 'a bare domain is not an account');
    t.match(notAccount.err[0], /not an account JID/);
  });

  await t.test('passwd changes the password; unknown users are reported', async (t) => {
    const changed = await ctl(file, 'passwd', 'alice@localhost', 'second-password');
    t.equal(changed.code, 0);
    t.same(changed.out, ['password changed for alice@localhost']);
    const nobody = await ctl(file, 'passwd', 'nobody@localhost', 'whatever-password');
    t.equal(nobody.code, 1);
    t.same(nobody.err, ['xmppctl: no such user: nobody@localhost']);
    await t.test('only the new password logs in', async (t) => {
      const server = await startTestServer(t, { dbUri });
      await t.rejects(server.login('alice', { password: 'first-password' }), /not-authorized/);
      const alice = await server.login('alice', { password: 'second-password' });
      t.ok(alice.jid);
    });
  });

  await t.test('listusers lists every account, or one domain', async (t) => {
    t.equal((await ctl(file, 'adduser', 'bob@localhost', 'bob-password')).code, 0);
    t.equal((await ctl(file, 'adduser', 'carol@example.org', 'carol-password')).code, 0);
    const all = await ctl(file, 'listusers');
    t.equal(all.code, 0);
    t.same(all.out, ['alice@localhost', 'bob@localhost', 'carol@example.org'].sort());
    const one = await ctl(file, 'listusers', 'example.org');
    t.equal(one.code, 0);
    t.same(one.out, ['carol@example.org']);
    t.same((await ctl(file, 'listusers', 'LOCALHOST')).out, ['alice@localhost', 'bob@localhost'], 'the domain is case-insensitive');
  });

  await t.test('deluser removes the account', async (t) => {
    const deleted = await ctl(file, 'deluser', 'bob@localhost');
    t.equal(deleted.code, 0);
    t.same(deleted.out, ['deleted bob@localhost']);
    t.same((await ctl(file, 'listusers', 'localhost')).out, ['alice@localhost']);
    const again = await ctl(file, 'deluser', 'bob@localhost');
    t.equal(again.code, 1);
    t.same(again.err, ['xmppctl: no such user: bob@localhost']);
  });

  await t.test('an unknown command or wrong arguments exit with 2 and the usage', async (t) => {
    const unknown = await ctl(file, 'frobnicate');
    t.equal(unknown.code, 2);
    t.match(unknown.err[0], /unknown command: frobnicate/);
    t.ok(unknown.err.some((line) => /^usage: xmppctl/.test(line)), 'the usage follows');
    const missing = await ctl(file, 'adduser');
    t.equal(missing.code, 2, 'a missing argument');
    t.match(missing.err[0], /^usage: xmppctl/);
    const none = await ctl(file);
    t.equal(none.code, 2, 'no command at all');
    t.notOk((await ctl(file, 'listusers')).out.includes('dave@localhost'), 'nothing was created');
  });

  await t.test('a bad config file is reported in one line with exit code 1', async (t) => {
    const bad = path.join(path.dirname(file), 'bad.properties');
    writeFileSync(bad, '--no-such-key = 1\n');
    const result = await ctl(bad, 'listusers');
    t.equal(result.code, 1);
    t.equal(result.err.length, 1);
    t.match(result.err[0], /--no-such-key/);
  });
});

forEachDatabase('xmppctl migrate creates the schema in an empty database', async (t, uri) => {
  const { file, dbUri } = tempConfig(t, 'localhost', uri);
  const result = await ctl(file, 'migrate');
  t.equal(result.code, 0);
  t.same(result.out, ['database schema is up to date']);
  const storage = await openStorage(dbUri, { migrate: false });
  try {
    for (const table of ['users', 'roster_items', 'offline_messages', 'vcards', 'private_xml', 'blocklist', 'cluster_nodes']) {
      t.ok(await storage.knex.schema.hasTable(table), `table ${table}`);
    }
  } finally {
    await storage.close();
  }
  t.equal((await ctl(file, 'migrate')).code, 0, 'running it again is harmless');
  const empty = await ctl(file, 'cluster-nodes');
  t.equal(empty.code, 1, 'an empty cluster_nodes table is most likely the wrong database: exit 1');
  t.equal(empty.err[0], `xmppctl: no cluster nodes registered in ${dbUri}: is this the cluster's database (--user-db-uri), and is a node running?`);
});

t.test('xmppctl adduser --random, check-config, status and version', async (t) => {
  const { file, dbUri } = tempConfig(t, 'localhost');
  const random = await ctl(file, 'adduser', 'frank@localhost', '--random');
  t.equal(random.code, 0);
  const password = /^password for frank@localhost: ([A-Za-z0-9_-]{24})$/.exec(random.out[0])?.[1];
  t.ok(password, 'a generated password is printed once');
  t.same(random.out.slice(1), ['created frank@localhost']);
  const server = await startTestServer(t, { dbUri });
  t.ok((await server.login('frank', { password })).jid, 'and logs in');

  const valid = await ctl(file, 'check-config');
  t.equal(valid.code, 0);
  t.same(valid.out, [`configuration is valid: ${file}`]);
  const bad = path.join(path.dirname(file), 'bad.properties');
  writeFileSync(bad, '--c2s-ports = 70000\n');
  const invalid = await ctl(bad, 'check-config');
  t.equal(invalid.code, 1);
  t.match(invalid.err[0], /--c2s-ports/);
  const down = await ctl(file, 'status');
  t.equal(down.code, 1, 'status with no node running');
  t.match(down.err[0], /no node answers on http:\/\/127\.0\.0\.1:\d+\/status/);
  const statusFile = path.join(path.dirname(file), 'status.properties');
  writeFileSync(statusFile, `--virt-hosts = localhost\n--user-db-uri = ${dbUri}\n--http-port = ${server.httpPort}\n--bind-address = 127.0.0.1\n`);
  const status = await ctl(statusFile, 'status');
  t.equal(status.code, 0, status.err.join('\n'));
  t.match(status.out[0], new RegExp(`^node +\\S+ \\(version ${SERVER_VERSION.replace(/\./g, '\\.')}, up \\d+ s\\)$`));
  t.match(status.out.join('\n'), /sessions +1/, 'frank is logged in');
  t.match(status.out.join('\n'), /database +sqlite \(answers\)/);
  const version = await ctl(file, 'version');
  t.equal(version.code, 0);
  t.same(version.out, [`xmpp-cluster-server ${SERVER_VERSION}`]);
});

/** Newest modification time of the TypeScript sources the CLI is built from. */
function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(full));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(full).mtimeMs);
  }
  return newest;
}

t.test('the built CLI exits with 0, 1 and 2', async (t) => {
  const cli = path.join(ROOT, 'dist', 'scripts', 'xmppctl.js');
  const sources = Math.max(newestSource(path.join(ROOT, 'server')), newestSource(path.join(ROOT, 'scripts')));
  if (!existsSync(cli) || statSync(cli).mtimeMs < sources) {
    t.comment('dist/ is missing or older than the sources: npm run build');
    execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'ignore', timeout: 120_000 });
  }
  const { file, dbUri } = tempConfig(t, 'localhost');
  const cliRun = (...args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [cli, '--config', file, ...args], { cwd: ROOT, timeout: 60_000 }, (error, stdout, stderr) => {
        resolve({ code: error ? ((error as { code?: number }).code ?? -1) : 0, stdout, stderr });
      });
    });

  const added = await cliRun('adduser', 'eve@localhost', 'eve-password');
  t.equal(added.code, 0, 'adduser: exit 0');
  t.equal(added.stdout, 'created eve@localhost\n');
  const duplicate = await cliRun('adduser', 'eve@localhost', 'eve-password');
  t.equal(duplicate.code, 1, 'duplicate adduser: exit 1');
  t.equal(duplicate.stderr.trim().split('\n').length, 1, 'with one line on stderr');
  t.match(duplicate.stderr, /eve@localhost already exists/);
  const listed = await cliRun('listusers');
  t.equal(listed.code, 0);
  t.equal(listed.stdout, 'eve@localhost\n');
  const unknown = await cliRun('frobnicate');
  t.equal(unknown.code, 2, 'unknown command: exit 2');
  t.match(unknown.stderr, /usage: xmppctl/);
  // No password on the command line (where ps and shell history would show it): read from a pipe.
  const piped = execFileSync(process.execPath, [cli, '--config', file, 'adduser', 'grace@localhost'], { cwd: ROOT, input: 'piped-password\n', encoding: 'utf8' });
  t.equal(piped, 'created grace@localhost\n', 'adduser with the password on standard input');
  const server = await startTestServer(t, { dbUri });
  t.ok((await server.login('grace', { password: 'piped-password' })).jid, 'that password logs in');
  const checked = await new Promise<{ code: number; out: string }>((resolve) => {
    execFile(process.execPath, [path.join(ROOT, 'dist', 'server', 'main.js'), '--config', file, '--check-config'], { cwd: ROOT, timeout: 60_000 }, (error, stdout) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? -1) : 0, out: stdout });
    });
  });
  t.equal(checked.code, 0, 'main.js --check-config validates without starting');
  t.match(checked.out, /configuration is valid/);
});
