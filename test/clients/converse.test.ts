import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import t from 'tap';
import { createRoom } from '../helpers/muc';
import { items } from '../helpers/pubsub';
import { eventually } from '../helpers/cluster';
import { MUC_ARGS } from '../helpers/muc';
import { PASSWORD, startTestServer, xml } from '../helpers/server';

// Converse.js 14, the web client, in Debian's Chromium (headless, no browser download), over
// WebSocket, with its defaults: it saves a bookmark (XEP-0402), and after a reload (a new browser
// context: nothing cached) the room is joined again and the chat history comes back from MAM.
const CHROMIUM = '/usr/bin/chromium';
const ROOT = path.resolve(__dirname, '..', '..');
const DIST = path.join(ROOT, 'node_modules', 'converse.js', 'dist');
const WAIT_MS = 30_000;

function available(): string | undefined {
  if (!existsSync(CHROMIUM)) return 'Debian chromium is not installed (apt-get install chromium)';
  if (!existsSync(path.join(DIST, 'converse.min.js'))) return 'converse.js is not in node_modules';
  return undefined;
}

const TYPES: Record<string, string> = { '.js': 'text/javascript', '.css': 'text/css', '.json': 'application/json', '.wasm': 'application/wasm', '.ttf': 'font/ttf', '.html': 'text/html' };

/** Serves Converse's dist/ and a page that logs `jid` in over `websocket`. */
async function servePage(websocket: string): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/') {
      const jid = url.searchParams.get('jid') ?? '';
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><html><head><link rel="stylesheet" href="/dist/converse.min.css"></head><body>
<script type="module">
import converse from '/dist/converse.min.js';
converse.plugins.add('test-hook', { initialize() { window._converse = this._converse; } });
converse.initialize({
  websocket_url: ${JSON.stringify(websocket)}, discover_connection_methods: false,
  jid: ${JSON.stringify(jid)}, password: ${JSON.stringify(PASSWORD)}, auto_login: true, auto_reconnect: false,
  view_mode: 'overlayed', i18n: 'en', assets_path: '/dist', loglevel: 'info',
  whitelisted_plugins: ['test-hook'], blacklisted_plugins: ['converse-omemo', 'converse-omemo-views'],
  persistent_store: 'sessionStorage', mam_request_all_pages: true,
});
</script></body></html>`);
      return;
    }
    const file = path.join(DIST, path.normalize(url.pathname.replace(/^\/dist\//, '')));
    if (!file.startsWith(DIST) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** The browser's global object, in the functions Playwright runs in the page (this program's types are Node's). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
declare const window: any;

const skip = available();
t.test('Converse.js saves a bookmark and, after a reload, gets its room and its history back', { skip }, async (t) => {
  const { chromium } = await import('playwright-core');
  const server = await startTestServer(t, { args: MUC_ARGS });
  for (const user of ['alice', 'bob']) await server.addUser(user);
  const bob = await server.login('bob', { resource: 'desk' });
  await createRoom(bob, 'tea@muc.localhost/Bob', { 'muc#roomconfig_persistentroom': '1' });
  const page = await servePage(`ws://127.0.0.1:${server.wsPort}/xmpp-websocket`);
  t.teardown(() => page.close());
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  t.teardown(() => browser.close());
  const errors: string[] = [];

  const open = async () => {
    const context = await browser.newContext();
    const tab = await context.newPage();
    tab.on('console', (message) => {
      if (message.type() === 'error') errors.push(message.text());
    });
    tab.on('pageerror', (err) => errors.push(String(err)));
    await tab.goto(`${page.url}?jid=alice@localhost`);
    await tab.waitForFunction(() => (window as any)._converse?.api.connection.connected(), undefined, { timeout: WAIT_MS });
    return { context, tab };
  };

  // First visit: Converse saves a bookmark for the room (XEP-0402, with its publish-options).
  const first = await open();
  await first.tab.evaluate(async () => {
    const api = (window as any)._converse.api;
    await api.waitUntil('bookmarksInitialized');
    await api.bookmarks.set({ jid: 'tea@muc.localhost', name: 'Tea', autojoin: true, nick: 'alice' });
  });
  const aliceElsewhere = await server.login('alice', { resource: 'checker' });
  await eventually('the bookmark is on the server', async () => (await items(aliceElsewhere, 'alice@localhost', 'urn:xmpp:bookmarks:1').catch(() => [])).length === 1, WAIT_MS);
  const [bookmark] = await items(aliceElsewhere, 'alice@localhost', 'urn:xmpp:bookmarks:1');
  t.equal(bookmark.attrs.id, 'tea@muc.localhost');
  t.equal(bookmark.getChild('conference')!.attrs.autojoin, 'true');
  t.notOk(errors.some((e) => /bookmark/i.test(e)), `no bookmark error in the browser: ${errors.join(' | ')}`);
  // bob writes while alice's Converse is connected.
  for (const body of ['one', 'two', 'three']) await bob.send(xml('message', { to: 'alice@localhost', type: 'chat' }, xml('body', {}, body)));
  await first.tab.waitForFunction(() => {
    const chat = (window as any)._converse.state.chatboxes.get('bob@localhost');
    return chat && chat.messages.filter((m: any) => m.get('body')).length >= 3;
  }, undefined, { timeout: WAIT_MS });
  await first.context.close();

  // A reload in a fresh browser: nothing cached. The room comes back from the bookmark (autojoin),
  // the conversation from MAM.
  const second = await open();
  await second.tab.waitForFunction(() => {
    const room = (window as any)._converse.state.chatboxes.get('tea@muc.localhost');
    return room && room.session?.get('connection_status') === 5;
  }, undefined, { timeout: WAIT_MS });
  t.pass('the bookmarked room is joined again (autojoin)');
  const bodies = await second.tab.evaluate(async () => {
    const api = (window as any)._converse.api;
    const chat = await api.chats.open('bob@localhost');
    await chat.messages.fetched;
    const deadline = Date.now() + 20_000;
    while (chat.messages.filter((m: any) => m.get('body')).length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    return chat.messages.filter((m: any) => m.get('body')).map((m: any) => m.get('body'));
  });
  t.same(bodies, ['one', 'two', 'three'], 'the history, from the archive');
  t.same(errors.filter((e) => /bookmark|mam|archive/i.test(e)), [], 'no errors about bookmarks or the archive');
  await second.context.close();
});
