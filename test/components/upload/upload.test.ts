import { randomBytes } from 'node:crypto';
import type { Element } from 'ltx';
import { eventually } from '../../helpers/cluster';
import { forEachDatabase } from '../../helpers/databases';
import { httpRequest } from '../../helpers/http';
import { startTestServer, xml, type XmppClient } from '../../helpers/server';

const UPLOAD = 'urn:xmpp:http:upload:0';
const SERVICE = 'upload.localhost';
const ARGS = ['--comp-name-1=upload', '--comp-class-1=upload', '--upload-max-size=300000', '--upload-quota=700000', '--upload-expiry=3', '--chore-interval=0.5'];
const WAIT_MS = 20_000;

/** XEP-0363 §4: asks for a slot; resolves with its PUT and GET URLs (on loopback). */
async function slot(client: XmppClient, filename: string, size: number, contentType?: string): Promise<{ put: string; get: string }> {
  const reply = await client.iqCaller.request(xml('iq', { type: 'get', to: SERVICE }, xml('request', { xmlns: UPLOAD, filename, size: String(size), ...(contentType ? { 'content-type': contentType } : {}) })));
  const element = reply.getChild('slot', UPLOAD)!;
  const local = (url: string) => url.replace('//localhost:', '//127.0.0.1:');
  return { put: local(element.getChild('put')!.attrs.url), get: local(element.getChild('get')!.attrs.url) };
}

const errorOf = (promise: Promise<unknown>) => promise.then(() => undefined, (err: { condition?: string; element?: Element }) => err);

forEachDatabase('XEP-0363 HTTP File Upload', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri, args: ARGS });
  await server.addUser('alice');
  await server.addUser('bob');
  const alice = await server.login('alice');
  const bob = await server.login('bob');

  await t.test('the service describes itself with its size limit', async (t) => {
    const info = await alice.iqCaller.request(xml('iq', { type: 'get', to: SERVICE }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })));
    const query = info.getChild('query')!;
    t.same(query.getChild('identity')!.attrs, { category: 'store', type: 'file', name: 'HTTP File Upload' });
    t.ok(query.getChildren('feature').some((f: Element) => f.attrs.var === UPLOAD));
    const fields = query.getChild('x', 'jabber:x:data')!.getChildren('field');
    t.equal(fields.find((f: Element) => f.attrs.var === 'max-file-size')!.getChildText('value'), '300000');
  });

  await t.test('a file PUT once is served byte for byte to anyone with the URL, with the right headers', async (t) => {
    const data = randomBytes(200_000);
    const urls = await slot(alice, 'photo of us.jpg', data.length, 'image/jpeg');
    t.match(urls.put, /^https:\/\/127\.0\.0\.1:\d+\/upload\/[A-Za-z0-9_-]{32}\/photo%20of%20us\.jpg$/);
    const preflight = await httpRequest(urls.put, { method: 'OPTIONS', headers: { Origin: 'https://web.example', 'Access-Control-Request-Method': 'PUT' } });
    t.equal(preflight.status, 204, 'a CORS preflight');
    t.equal(preflight.headers['access-control-allow-origin'], '*');
    t.match(String(preflight.headers['access-control-allow-methods']), /PUT/);
    const put = await httpRequest(urls.put, { method: 'PUT', body: data, headers: { 'Content-Type': 'image/jpeg', 'Content-Length': String(data.length) } });
    t.equal(put.status, 201);
    const got = await httpRequest(urls.get);
    t.equal(got.status, 200);
    t.ok(got.bytes.equals(data), 'the same bytes');
    t.equal(got.headers['content-type'], 'image/jpeg');
    t.equal(got.headers['content-disposition'], "inline; filename*=UTF-8''photo%20of%20us.jpg");
    t.equal(got.headers['x-content-type-options'], 'nosniff');
    t.equal(got.headers['access-control-allow-origin'], '*');
    const again = await httpRequest(urls.put, { method: 'PUT', body: data, headers: { 'Content-Type': 'image/jpeg' } });
    t.equal(again.status, 409, 'a slot takes one file');
    const doc = await slot(bob, 'notes.html', 5, 'text/html');
    await httpRequest(doc.put, { method: 'PUT', body: '<b>x', headers: { 'Content-Type': 'text/html', 'Content-Length': '4' } }).then((r) => t.equal(r.status, 400, 'fewer bytes than announced'));
    t.equal((await httpRequest(doc.put, { method: 'PUT', body: '<b>x</', headers: { 'Content-Type': 'text/html' } })).status, 400, 'more bytes than announced');
    t.equal((await httpRequest(doc.put, { method: 'PUT', body: '<b>x<', headers: { 'Content-Type': 'text/plain' } })).status, 400, 'another content type');
    t.equal((await httpRequest(doc.put, { method: 'PUT', body: '<b>x<', headers: { 'Content-Type': 'text/html' } })).status, 201);
    const html = await httpRequest(doc.get);
    t.match(String(html.headers['content-disposition']), /^attachment;/, 'anything but media is an attachment');
    t.match(String(html.headers['content-security-policy']), /sandbox/, 'and never runs as a page of this origin');
    t.equal((await httpRequest(urls.get.replace(/upload\/[^/]+/, 'upload/not-a-slot'))).status, 404);
  });

  await t.test('a file over the size limit gets file-too-large; over the quota, resource-constraint', async (t) => {
    const tooBig = await errorOf(slot(alice, 'movie.mp4', 300_001));
    t.equal(tooBig?.condition, 'not-acceptable');
    t.equal(tooBig?.element?.getChild('file-too-large', UPLOAD)?.getChildText('max-file-size'), '300000');
    await slot(alice, 'second.bin', 300_000);
    const overQuota = await errorOf(slot(alice, 'third.bin', 300_000));
    t.equal(overQuota?.condition, 'resource-constraint', 'alice has 200000 + 300000 reserved of 700000');
    t.ok(await slot(bob, 'bobs.bin', 300_000), 'quotas are per user');
  });

  await t.test('a slot never uploaded to stops counting against the quota once it can no longer be used', async (t) => {
    await server.addUser('carol');
    const carol = await server.login('carol');
    // carol asked for 600000 bytes six minutes ago and never uploaded: the slot is dead (5 min).
    await server.node.storage.uploads.createSlot({
      id: 'abandoned-slot', user: 'carol@localhost', filename: 'never.bin', size: 600_000, contentType: 'application/octet-stream',
      createdAt: new Date(Date.now() - 6 * 60_000),
    });
    t.ok(await slot(carol, 'now.bin', 300_000), 'it does not count: 300000 fits in 700000');
    t.equal(await errorOf(slot(carol, 'more.bin', 300_000)), undefined, 'two live slots of 300000 fit too');
    t.equal((await errorOf(slot(carol, 'too-much.bin', 300_000)))?.condition, 'resource-constraint', 'a third does not: live slots count');
  });

  await t.test('files expire (--upload-expiry), by a cluster chore', async (t) => {
    const urls = await slot(bob, 'short-lived.txt', 3, 'text/plain');
    t.equal((await httpRequest(urls.put, { method: 'PUT', body: 'bye', headers: { 'Content-Type': 'text/plain' } })).status, 201);
    t.equal((await httpRequest(urls.get)).status, 200);
    await eventually('the file expired', async () => (await httpRequest(urls.get)).status === 404, WAIT_MS);
    const left = await server.node.storage.knex('upload_chunks').count({ n: '*' }).first();
    t.equal(Number((left as { n: number }).n), 0, 'no bytes left behind');
  });
});
