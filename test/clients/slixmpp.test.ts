import { execFile, execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import t from 'tap';
import { eventually } from '../helpers/cluster';
import { parseJID } from '../../server/jid';
import { freePort, PASSWORD, startTestServer, xml } from '../helpers/server';
import { httpRequest } from '../helpers/http';
import { MUC_ARGS } from '../helpers/muc';
import { items } from '../helpers/pubsub';

// Debian's python3-slixmpp, run with its default settings (it picks SCRAM-SHA-*-PLUS with
// tls-unique channel binding, also on TLS 1.3), must log in over STARTTLS and direct TLS.
const PYTHON = '/usr/bin/python3';
const SCRIPT = path.join(__dirname, 'fixtures', 'slixmpp_login.py');

function slixmppAvailable(): boolean {
  try {
    execFileSync(PYTHON, ['-c', 'import slixmpp'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

interface Run { code: number | null; lines: string[]; stderr: string }

function runSlixmpp(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(PYTHON, [SCRIPT, ...args], { timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? ((err as NodeJS.ErrnoException & { code?: number }).code as number | undefined) ?? 1 : 0;
      resolve({ code: typeof code === 'number' ? code : 1, lines: stdout.split('\n').filter(Boolean), stderr });
    });
  });
}

if (!slixmppAvailable()) {
  t.skip('slixmpp: python3-slixmpp is not installed (apt-get install python3-slixmpp)', () => undefined);
} else {
  t.test('slixmpp logs in with its defaults over STARTTLS and direct TLS, with SCRAM-SHA-*-PLUS', async (t) => {
    const server = await startTestServer(t);
    const jid = await server.addUser('sli');
    const ca = path.join(server.node.config.dataDir, 'tls', 'cert.pem');
    for (const [mode, port] of [['starttls', server.port], ['direct', server.tlsPort]] as const) {
      const run = await runSlixmpp([jid, PASSWORD, '127.0.0.1', String(port), mode, ca]);
      const said = (what: string) => run.lines.find((line) => line.startsWith(`${what} `))?.slice(what.length + 1);
      t.equal(run.code, 0, `${mode}: logged in and got its own message back\n${run.lines.join('\n')}\n${run.stderr.slice(-2000)}`);
      t.notOk(run.lines.includes('FAILED_AUTH'), `${mode}: no mechanism failed on the way`);
      t.match(said('MECHANISM') ?? '', /^SCRAM-SHA-(1|256|512)-PLUS$/, `${mode}: with channel binding (${said('MECHANISM')})`);
      t.equal(said('TLS'), 'TLSv1.3', `${mode}: on TLS 1.3`);
      t.equal(said('MESSAGE'), 'hello from slixmpp');
    }
    t.equal(await server.node.storage.authFailures.count(jid, 300_000), 0, 'no failure was counted against the account');
  });

  t.test('slixmpp pages an archive with its xep_0313 plugin, forwards and backwards', async (t) => {
    const server = await startTestServer(t);
    const jid = await server.addUser('slimam');
    await server.addUser('talker');
    const talker = await server.login('talker');
    const archived = async () => Number(((await server.node.storage.knex('archive_messages').where({ user: jid }).count({ n: '*' }).first()) as { n: number }).n);
    for (let i = 1; i <= 4; i++) await talker.send(xml('message', { to: jid, type: 'chat' }, xml('body', {}, `m${i}`)));
    await eventually('the first four archived', async () => (await archived()) === 4, 20_000);
    // A start date after m4's: the clock moves on by a millisecond at least before m5 is sent.
    const since = new Date(Date.now() + 1);
    while (Date.now() <= since.getTime()) await new Promise((resolve) => setImmediate(resolve));
    for (let i = 5; i <= 7; i++) await talker.send(xml('message', { to: jid, type: 'chat' }, xml('body', {}, `m${i}`)));
    await eventually('archived', async () => (await archived()) === 7, 20_000);
    const ca = path.join(server.node.config.dataDir, 'tls', 'cert.pem');
    const run = await new Promise<Run>((resolve) => {
      execFile(PYTHON, [path.join(__dirname, 'fixtures', 'slixmpp_mam.py'), jid, PASSWORD, '127.0.0.1', String(server.port), ca, 'talker@localhost', '3', since.toISOString()], { timeout: 120_000 }, (err, stdout, stderr) => {
        resolve({ code: err ? 1 : 0, lines: stdout.split('\n').filter(Boolean), stderr });
      });
    });
    t.equal(run.code, 0, `${run.lines.join('\n')}\n${run.stderr.slice(-2000)}`);
    const bodies = (what: string) => run.lines.filter((l) => l.startsWith(`${what} `)).map((l) => l.slice(what.length + 1));
    t.same(bodies('FORWARD'), ['m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7'], 'pages of 3, oldest first');
    t.same(bodies('REVERSE'), ['m7', 'm6', 'm5', 'm4', 'm3', 'm2', 'm1'], 'and newest first');
    t.same(bodies('SINCE'), ['m5', 'm6', 'm7'], 'and from a start date on');
  });

  t.test('slixmpp lists and runs XEP-0133 admin commands with its xep_0050 and xep_0133 plugins', async (t) => {
    const server = await startTestServer(t, { args: ['--admins=sliadmin@localhost'] });
    const jid = await server.addUser('sliadmin');
    const ca = path.join(server.node.config.dataDir, 'tls', 'cert.pem');
    const run = await new Promise<Run>((resolve) => {
      execFile(PYTHON, [path.join(__dirname, 'fixtures', 'slixmpp_admin.py'), jid, PASSWORD, '127.0.0.1', String(server.port), ca, 'made-by-slixmpp@localhost', 'slixmpp-made-pw'], { timeout: 120_000 }, (err, stdout, stderr) => {
        resolve({ code: err ? 1 : 0, lines: stdout.split('\n').filter(Boolean), stderr });
      });
    });
    t.equal(run.code, 0, `${run.lines.join('\n')}\n${run.stderr.slice(-2000)}`);
    t.ok(run.lines.includes('COMMAND http://jabber.org/protocol/admin#add-user'), 'the commands are listed');
    t.same(run.lines.filter((l) => l.startsWith('ADDED ') || l.startsWith('ONLINE ')), ['ADDED Created made-by-slixmpp@localhost.', 'ONLINE 1']);
    const made = await server.login('made-by-slixmpp', { password: 'slixmpp-made-pw' });
    t.ok(made.jid, 'the account slixmpp added logs in');
    await made.stop();
  });

  t.test('slixmpp uploads a file (xep_0363) and stores bookmarks (xep_0048) that XEP-0402 clients see', async (t) => {
    // aiohttp, which slixmpp uploads with, checks certificates against the system's store: the files
    // are served over plain HTTP on the BOSH port, as behind a TLS-terminating proxy (--upload-url).
    const bosh = await freePort();
    const server = await startTestServer(t, { args: [...MUC_ARGS, '--comp-name-2=upload', '--comp-class-2=upload', `--bosh-ports=${bosh}`, `--upload-url=http://127.0.0.1:${bosh}/upload`] });
    const jid = await server.addUser('slifiles');
    const ca = path.join(server.node.config.dataDir, 'tls', 'cert.pem');
    const file = path.join(server.node.config.dataDir, 'notes.txt');
    const content = `notes ${Date.now()}\n`.repeat(100);
    writeFileSync(file, content);
    const run = await new Promise<Run>((resolve) => {
      execFile(PYTHON, [path.join(__dirname, 'fixtures', 'slixmpp_files.py'), jid, PASSWORD, '127.0.0.1', String(server.port), ca, file, 'lounge@muc.localhost'], { timeout: 120_000 }, (err, stdout, stderr) => {
        resolve({ code: err ? 1 : 0, lines: stdout.split('\n').filter(Boolean), stderr });
      });
    });
    t.equal(run.code, 0, `${run.lines.join('\n')}\n${run.stderr.slice(-2000)}`);
    const url = run.lines.find((l) => l.startsWith('URL '))?.slice(4) ?? '';
    t.match(url, /^http:\/\/127\.0\.0\.1:\d+\/upload\/[A-Za-z0-9_-]+\/notes\.txt$/);
    const got = await httpRequest(url);
    t.equal(got.text, content, 'the uploaded file, byte for byte');
    t.equal(got.headers['content-type'], 'text/plain');
    // The XEP-0048 bookmark is a XEP-0402 one too (#compat): what a newer client of the account reads.
    const other = await server.login('slifiles', { resource: 'modern' });
    const pep = await items(other, jid, 'urn:xmpp:bookmarks:1');
    t.same(pep.map((i) => i.attrs.id), ['lounge@muc.localhost']);
    t.equal(pep[0].getChild('conference')!.attrs.autojoin, 'true');
    t.equal(pep[0].getChild('conference')!.getChildText('nick'), 'sli');
  });

  t.test('slixmpp with its XEP-0198 and XEP-0352 plugins resumes after losing its connection, and misses nothing', async (t) => {
    const server = await startTestServer(t);
    const jid = await server.addUser('slisr');
    await server.addUser('sender');
    const ca = path.join(server.node.config.dataDir, 'tls', 'cert.pem');
    const child = spawn(PYTHON, [path.join(__dirname, 'fixtures', 'slixmpp_resume.py'), jid, PASSWORD, '127.0.0.1', String(server.port), ca, '3']);
    t.teardown(() => child.kill());
    const lines: string[] = [];
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const waiters: (() => void)[] = [];
    let partial = '';
    child.stdout.on('data', (d: Buffer) => {
      partial += d.toString();
      const parts = partial.split('\n');
      partial = parts.pop()!;
      lines.push(...parts.filter(Boolean));
      for (const wake of waiters.splice(0)) wake();
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const line = (prefix: string) => new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${prefix} line: ${lines.join(' | ')} ${stderr.slice(-1500)}`)), 60_000);
      const check = () => {
        const found = lines.find((l) => l.startsWith(prefix));
        if (found !== undefined) {
          clearTimeout(timer);
          resolve(found.slice(prefix.length).trim());
        } else {
          waiters.push(check);
        }
      };
      check();
    });
    const full = await line('SESSION');
    await line('ENABLED');
    const session = () => server.node.sessions.get(parseJID(full)) as { sink: { inactive?: boolean } } | undefined;
    await eventually('the client said it is inactive (XEP-0352)', () => session()?.sink.inactive === true, 60_000);
    child.stdin.write('drop\n');
    await line('CUT');
    await eventually('the session waits to be resumed', () => server.node.streamManagement.hibernating === 1, 60_000);
    const sender = await server.login('sender');
    for (let i = 1; i <= 3; i++) await sender.send(xml('message', { to: full, type: 'chat' }, xml('body', {}, `while cut ${i}`)));
    child.stdin.write('reconnect\n');
    await line('RESUMED');
    t.equal(await exited, 0, `the script saw every message on the resumed stream\n${lines.join('\n')}\n${stderr.slice(-1500)}`);
    t.same(lines.filter((l) => l.startsWith('MESSAGE')), ['MESSAGE while cut 1', 'MESSAGE while cut 2', 'MESSAGE while cut 3'], 'each once, in order');
    t.ok(server.node.streamManagement.counters.resumed >= 1);
  });
}

/** A bare TLS connection that collects what the server says and waits for patterns in it. */
async function rawTls(port: number): Promise<{ send(text: string): void; until(pattern: RegExp): Promise<string>; close(): void }> {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false });
  await new Promise((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  let text = '';
  let waiter: (() => void) | undefined;
  socket.on('data', (data: Buffer) => {
    text += data.toString('utf8');
    waiter?.();
  });
  return {
    send: (data) => socket.write(data),
    until: (pattern) => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${pattern} in: ${text}`)), 30_000);
      const check = () => {
        const match = pattern.exec(text);
        if (!match) return;
        clearTimeout(timer);
        waiter = undefined;
        text = text.slice(match.index + match[0].length);
        resolve(match[0]);
      };
      waiter = check;
      check();
    }),
    close: () => socket.destroy(),
  };
}

t.test('a channel-binding mismatch fails the exchange without counting against the account; a wrong password counts', async (t) => {
  const server = await startTestServer(t);
  const jid = await server.addUser('cbmismatch');
  const conn = await rawTls(server.tlsPort);
  t.teardown(() => conn.close());
  conn.send("<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
  await conn.until(/<\/stream:features>/);
  const gs2 = 'p=tls-exporter,,';
  const clientFirstBare = 'n=cbmismatch,r=abcdefghijklmnopqrstuvwx';
  conn.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256-PLUS'>${Buffer.from(gs2 + clientFirstBare).toString('base64')}</auth>`);
  const challenge = await conn.until(/<challenge[^>]*>[^<]*<\/challenge>/);
  const serverFirst = Buffer.from(challenge.replace(/<[^>]+>/g, ''), 'base64').toString('utf8');
  const nonce = /r=([^,]+)/.exec(serverFirst)![1];
  // Channel-binding data that is not this connection's (a man in the middle would present his own).
  const wrongBinding = Buffer.concat([Buffer.from(gs2), Buffer.alloc(32, 7)]).toString('base64');
  const proof = Buffer.alloc(32, 1).toString('base64');
  conn.send(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>${Buffer.from(`c=${wrongBinding},r=${nonce},p=${proof}`).toString('base64')}</response>`);
  t.match(await conn.until(/<failure[\s\S]*?<\/failure>/), /not-authorized[\s\S]*channel binding mismatch/, 'not-authorized, saying why');
  t.equal(await server.node.storage.authFailures.count(jid, 300_000), 0, 'the mismatch is not counted against the account');

  conn.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from('\0cbmismatch\0not-the-password').toString('base64')}</auth>`);
  t.match(await conn.until(/<failure[\s\S]*?<\/failure>/), /not-authorized/);
  // The stream records one failure before it reads the next element: had the mismatch counted, this would reach 2.
  await eventually('the wrong password is counted', async () => (await server.node.storage.authFailures.count(jid, 300_000)) >= 1);
  t.equal(await server.node.storage.authFailures.count(jid, 300_000), 1, 'a wrong password is, the mismatch is not');
});
