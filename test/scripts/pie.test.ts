import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseXml } from 'ltx';
import t from 'tap';
import { xmppctl as ctl } from '../helpers/xmppctl';
import { deriveScramCredential } from '../../server/c2s/sasl/scram';
import { openTestStorage, type TapTest } from '../helpers/databases';
import { connectClient } from '../helpers/client';
import { nextStanza, startTestServer, xml } from '../helpers/server';

/** A folder with an init.properties for `hosts` and a fresh SQLite database. */
function setup(t: TapTest, hosts = 'localhost'): { dir: string; file: string; dbUri: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xmpp-pie-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const dbUri = `sqlite:${path.join(dir, 'xmpp.sqlite')}`;
  const file = path.join(dir, 'init.properties');
  writeFileSync(file, [`--virt-hosts = ${hosts}`, `--user-db-uri = ${dbUri}`, `--data-dir = ${dir}`, '--scram-iterations = 4096', ''].join('\n'));
  return { dir, file, dbUri };
}

t.test('xmppctl export and import move accounts and their data between servers', async (t) => {
  const source = setup(t);
  const from = await openTestStorage(t, source.dbUri);
  t.equal((await ctl(source.file, 'adduser', 'alice@localhost', 'alice-password')).code, 0);
  t.equal((await ctl(source.file, 'adduser', 'bob@localhost', 'bob-password')).code, 0);
  await from.roster.setItem('alice@localhost', { jid: 'bob@localhost', name: 'Bobby', subscription: 'both', groups: ['Friends', 'Work'] });
  await from.roster.setItem('alice@localhost', { jid: 'carol@elsewhere.example', subscription: 'none', ask: true, groups: [] });
  await from.roster.setItem('bob@localhost', { jid: 'alice@localhost', subscription: 'both', approved: true, groups: [] });
  await from.roster.addPendingIn('alice@localhost', 'dave@elsewhere.example', "<presence xmlns='jabber:client' type='subscribe' from='dave@elsewhere.example' to='alice@localhost'/>");
  await from.vcards.set('alice@localhost', "<vCard xmlns='vcard-temp'><FN>Alice Liddell</FN></vCard>");
  await from.privateXml.set('bob@localhost', 'storage:bookmarks', "<storage xmlns='storage:bookmarks'><conference jid='room@muc.localhost' autojoin='true'/></storage>");
  await from.offline.store('bob@localhost', "<message xmlns='jabber:client' from='alice@localhost/phone' to='bob@localhost' type='chat' id='m1'><body>while you were away 🌙</body></message>", 100);

  const exportFile = path.join(source.dir, 'export.xml');
  const exported = await ctl(source.file, 'export', exportFile);
  t.same(exported.out, [`exported 2 account(s) to ${exportFile}`]);
  t.equal(statSync(exportFile).mode & 0o777, 0o600, 'readable by its owner only');
  const text = readFileSync(exportFile, 'utf8');
  t.notMatch(text, /alice-password|bob-password/, 'no password, only SCRAM data');
  t.match(text, /<scram-credentials xmlns="urn:xmpp:pie:0#scram" mechanism="SCRAM-SHA-256">/);
  t.equal((await ctl(source.file, 'export', exportFile)).code, 1, 'an existing file is not overwritten');

  const target = setup(t);
  const imported = await ctl(target.file, 'import', exportFile);
  t.equal(imported.code, 0, imported.err.join('\n'));
  t.same(imported.out, ['imported alice@localhost', 'imported bob@localhost', '2 account(s) imported, 0 skipped']);
  const again = await ctl(target.file, 'import', exportFile);
  t.same(again.out, ['skipped alice@localhost: the account exists here', 'skipped bob@localhost: the account exists here', '0 account(s) imported, 2 skipped']);

  const to = await openTestStorage(t, target.dbUri);
  for (const user of ['alice@localhost', 'bob@localhost']) t.same(await to.roster.getItems(user), await from.roster.getItems(user), `${user}'s roster`);
  t.same(await to.roster.getPendingIn('alice@localhost').then((p) => p.map((x) => x.contact)), ['dave@elsewhere.example'], 'the unanswered request');
  // The same XML, whatever the quotes.
  const canon = (xml: string | undefined) => (xml === undefined ? undefined : parseXml(xml).toString());
  t.equal(canon(await to.vcards.get('alice@localhost')), canon(await from.vcards.get('alice@localhost')));
  t.equal(canon(await to.privateXml.get('bob@localhost', 'storage:bookmarks')), canon(await from.privateXml.get('bob@localhost', 'storage:bookmarks')));
  const { credentials } = (await to.users.get('alice@localhost'))!;
  t.same(credentials, (await from.users.get('alice@localhost'))!.credentials, 'the same SCRAM credentials');
  await to.close();
  await from.close();

  const server = await startTestServer(t, { dbUri: target.dbUri });
  const bob = await server.login('bob', { password: 'bob-password', presence: false });
  const waiting = nextStanza(bob, (s) => s.is('message'));
  await bob.send(xml('presence'));
  t.equal((await waiting).getChildText('body'), 'while you were away 🌙', 'the offline message is delivered on the new server');
  const alice = await server.login('alice', { password: 'alice-password', mechanism: 'PLAIN' });
  t.ok(alice.jid, 'the old password works');
});

t.test('xmppctl import: SCRAM-SHA-1 only accounts, other hosts, XIncludes and bad files', async (t) => {
  const target = setup(t, 'capulet.example');
  const dir = target.dir;
  const sha1 = deriveScramCredential('juliet-password', 'SHA-1', 4096);
  // The XEP-0227 1.1 layout a server that keeps SCRAM-SHA-1 alone writes, split with XIncludes.
  writeFileSync(path.join(dir, 'main.xml'), `<?xml version='1.0' encoding='UTF-8'?>
<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'>
  <xi:include href='capulet.example.xml'/>
  <host jid='montague.example'><user name='romeo' password='x'/></host>
</server-data>`);
  writeFileSync(path.join(dir, 'capulet.example.xml'), `<host xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude' jid='capulet.example'>
  <xi:include href='capulet.example/juliet.xml'/>
  <user name='nurse'/>
</host>`);
  mkdirSync(path.join(dir, 'capulet.example'));
  writeFileSync(path.join(dir, 'capulet.example', 'juliet.xml'), `<user xmlns='urn:xmpp:pie:0' name='juliet'>
  <scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>
    <iter-count>${sha1.iterations}</iter-count><salt>${sha1.salt}</salt><server-key>${sha1.serverKey}</server-key><stored-key>${sha1.storedKey}</stored-key>
  </scram-credentials>
  <query xmlns='jabber:iq:roster'><item jid='romeo@montague.example' subscription='both'><group>Love</group></item></query>
</user>`);
  const result = await ctl(target.file, 'import', path.join(dir, 'main.xml'));
  t.equal(result.code, 1, 'a problem makes the exit code 1');
  t.same(result.out, [
    'imported juliet@capulet.example',
    'skipped host montague.example: not in --virt-hosts',
    'note: juliet@capulet.example came with one SCRAM hash only; it logs in with that mechanism or PLAIN until its password is set again (xmppctl passwd)',
    '1 account(s) imported, 0 skipped',
  ]);
  t.same(result.err, [
    'problem: nurse@capulet.example: no password or SCRAM credential it could log in with; not imported',
    'xmppctl: 1 item(s) could not be imported (above)',
  ]);

  const server = await startTestServer(t, { dbUri: target.dbUri, args: ['--virt-hosts=capulet.example'] });
  t.same((await server.node.storage.roster.getItems('juliet@capulet.example')).map((i) => [i.jid, i.subscription, i.groups]), [['romeo@montague.example', 'both', ['Love']]]);
  for (const mechanism of ['SCRAM-SHA-1', 'PLAIN'] as const) {
    const juliet = await connectClient({ service: `xmpp://127.0.0.1:${server.port}`, domain: 'capulet.example', local: 'juliet', password: 'juliet-password', mechanism });
    t.equal(juliet.jid?.bare().toString(), 'juliet@capulet.example', `logs in with ${mechanism}`);
    await juliet.stop();
  }

  writeFileSync(path.join(dir, 'bad.xml'), '<server-data xmlns="urn:xmpp:pie:0"><host jid="capulet.example">');
  const bad = await ctl(target.file, 'import', path.join(dir, 'bad.xml'));
  t.equal(bad.code, 1);
  t.match(bad.err[0], /^xmppctl: .*bad\.xml: /, 'a broken file is named');
  writeFileSync(path.join(dir, 'loop.xml'), `<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'><xi:include href='loop.xml'/></server-data>`);
  t.match((await ctl(target.file, 'import', path.join(dir, 'loop.xml'))).err[0], /XIncludes nest deeper than 8/);
});

// A real export of Debian's ejabberd 23.01 (fixtures/ejabberd-piefxis/README.md says how it was
// made): with plain passwords, and with the SCRAM-SHA-1 credentials ejabberd keeps by default.
const EJABBERD = path.join(__dirname, 'fixtures', 'ejabberd-piefxis');
for (const [variant, main] of [['plain passwords', '20261206-141116.xml'], ['SCRAM-SHA-1 credentials', 'scram/20261206-141149.xml']] as const) {
  t.test(`xmppctl import of an ejabberd export_piefxis file (${variant})`, async (t) => {
    const target = setup(t, 'example.net');
    const result = await ctl(target.file, 'import', path.join(EJABBERD, main));
    t.equal(result.code, 0, result.err.join('\n'));
    t.same(result.out.filter((l) => l.startsWith('imported ')), ['imported alice@example.net', 'imported bob@example.net', 'imported carol@example.net']);

    const server = await startTestServer(t, { dbUri: target.dbUri, args: ['--virt-hosts=example.net'] });
    const { storage } = server.node;
    t.same((await storage.roster.getItems('alice@example.net')).map((i) => [i.jid, i.name, i.subscription, i.groups]), [
      ['bob@example.net', 'Bobby', 'both', ['Friends']],
      ['carol@example.net', 'Carol', 'to', []],
    ]);
    t.same((await storage.roster.getItems('carol@example.net')).map((i) => [i.jid, i.subscription, i.groups]), [
      ['alice@example.net', 'from', []],
      ['dave@elsewhere.example', 'none', ['Work']],
    ]);
    t.match(await storage.vcards.get('alice@example.net'), /<FN>Alice Liddell<\/FN>.*<NICKNAME>alice<\/NICKNAME>/);
    t.match(await storage.privateXml.get('bob@example.net', 'storage:bookmarks'), /conference jid=.room@conference\.example\.net./);

    // The passwords ejabberd was given log in here, with SCRAM-SHA-1 and PLAIN.
    const login = (local: string, password: string, mechanism: 'SCRAM-SHA-1' | 'PLAIN', presence = true) =>
      connectClient({ service: `xmpp://127.0.0.1:${server.port}`, domain: 'example.net', local, password, mechanism, presence });
    for (const mechanism of ['SCRAM-SHA-1', 'PLAIN'] as const) {
      const alice = await login('alice', 'alice-secret-1', mechanism);
      t.equal(alice.jid?.bare().toString(), 'alice@example.net', `alice logs in with ${mechanism}`);
      await alice.stop();
    }
    await t.rejects(login('bob', 'wrong-password', 'SCRAM-SHA-1'), /not-authorized/);
    const carol = await login('carol', 'carol-pw-333', 'SCRAM-SHA-1', false);
    const offline = nextStanza(carol, (s) => s.is('message'));
    await carol.send(xml('presence'));
    const message = await offline;
    t.equal(message.getChildText('body'), 'Hello Carol, you were offline', 'the message ejabberd held offline is delivered');
    t.equal(message.attrs.from, 'alice@example.net');
    await carol.stop();
  });
}
