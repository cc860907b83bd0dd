import type { Element } from 'ltx';
import { eventually, type TestCluster } from './cluster';
import type { TapTest } from './databases';
import type { XmppClient } from './client';
import { xml } from './server';

const WAIT_MS = 60_000;
/** Sender/receiver pairs [12], spread so that most messages cross nodes. */
const PAIRS = 12;
/** Messages per second offered in total [150]. */
const RATE = 150;

type Sm = { on(event: 'ack' | 'fail', listener: (stanza: Element) => void): void; requestAckDebounce: number };
type Reconnecting = { options: { service: string }; reconnect: { start(): void; delay: number }; status: string };
const smOf = (client: XmppClient) => (client as unknown as { streamManagement: Sm }).streamManagement;

/**
 * The operator's rolling upgrade: each of three nodes in turn gets SIGTERM (drain: not ready,
 * clients told to go, rooms handed over, links quiet, row deleted), exits 0 and starts again
 * (from `restartFrom` when given: an upgrade),
 * while 12 pairs of real clients chat across the nodes. Clients reconnect by themselves (as
 * @xmpp/client does) through a "balancer" that sends them to a node that is up. Every message
 * the server acknowledged (XEP-0198) must be delivered, live or from offline storage, or
 * bounced: none lost.
 */
export async function rollingRestart(t: TapTest, cluster: TestCluster, restartFrom?: string): Promise<void> {
  let down = -1;
  let turn = 0;
  /** What a balancer does: the next node that is up. */
  const upNode = () => {
    const up = cluster.nodes.filter((n) => n.index !== down);
    return up[turn++ % up.length];
  };

  const accepted = new Set<string>();
  const sentAt = new Map<string, number>();
  /** When nodes of the previous release were stopping (an upgrade stops each while it still runs the old build). */
  const oldStops: [number, number][] = [];
  /** Every stop: node index, when SIGTERM was sent, when the process had exited. */
  const stops: [number, number, number][] = [];
  const received = new Map<string, number>();
  const bounced = new Set<string>();
  let failed = 0;
  const senders: XmppClient[] = [];
  const receivers: XmppClient[] = [];
  for (let i = 0; i < PAIRS; i++) {
    await cluster.addUser(`rs${i}`);
    await cluster.addUser(`rr${i}`);
    const receiver = await cluster.login((i + 1) % 3, `rr${i}`, { resource: 'phone' });
    const sender = await cluster.login(i % 3, `rs${i}`, { resource: 'desk' });
    for (const client of [receiver, sender]) reconnectThroughBalancer(client, () => `xmpp://127.0.0.1:${upNode().c2sPort}`);
    // Back with a new session (its old node stopped): available again, so offline messages come.
    receiver.on('online', () => void receiver.send(xml('presence')).catch(() => undefined));
    receiver.on('stanza', (stanza: Element) => {
      const id = stanza.attrs.id as string | undefined;
      if (stanza.is('message') && stanza.attrs.type !== 'error' && id?.startsWith('roll-')) received.set(id, (received.get(id) ?? 0) + 1);
    });
    sender.on('stanza', (stanza: Element) => {
      const id = stanza.attrs.id as string | undefined;
      if (stanza.is('message') && stanza.attrs.type === 'error' && id?.startsWith('roll-')) bounced.add(id);
    });
    // @xmpp/client asks for an acknowledgement 250 ms after the last stanza sent; a sender
    // talking faster than that would never ask.
    smOf(sender).requestAckDebounce = 20;
    smOf(sender).on('ack', (stanza) => stanza.attrs.id?.startsWith('roll-') && accepted.add(stanza.attrs.id));
    smOf(sender).on('fail', () => failed++);
    senders.push(sender);
    receivers.push(receiver);
  }
  await eventually('stream management on every client', () => [...senders, ...receivers].every((c) => (c as unknown as { streamManagement: { enabled: boolean } }).streamManagement.enabled), WAIT_MS);

  // Offered round-robin; a sender that is reconnecting skips its turn (a client sends nothing while offline).
  let next = 0;
  let running = true;
  const startedAt = Date.now();
  const traffic = (async () => {
    while (running) {
      const due = Math.floor(((Date.now() - startedAt) * RATE) / 1000);
      while (next < due) {
        const i = next % PAIRS;
        const id = `roll-${next++}`;
        const sender = senders[i];
        if ((sender as unknown as Reconnecting).status !== 'online') continue;
        const to = next % 2 === 0 ? `rr${i}@localhost` : `rr${i}@localhost/phone`;
        sentAt.set(id, Date.now());
        sender.send(xml('message', { to, type: 'chat', id }, xml('body', {}, id))).catch(() => undefined);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  const allOnline = () => [...senders, ...receivers].every((c) => (c as unknown as Reconnecting).status === 'online');
  const acceptedAtLeast = (n: number) => eventually(`${n} messages accepted`, () => accepted.size >= n, WAIT_MS);

  await acceptedAtLeast(300);
  for (const node of cluster.nodes) {
    await t.test(`node ${node.index + 1} restarts`, async (t) => {
      down = node.index;
      const before = accepted.size;
      const stopping = Date.now();
      t.equal(await node.stop(), 0, 'SIGTERM: drained and exited 0');
      stops.push([node.index, stopping, Date.now()]);
      if (restartFrom) oldStops.push([stopping, Date.now()]);
      await node.start(restartFrom);
      down = -1;
      for (const other of cluster.nodes) await cluster.waitConnected(other.index, 3, WAIT_MS);
      await eventually('every client is online again', allOnline, WAIT_MS);
      await acceptedAtLeast(before + 300);
      t.pass(`${accepted.size - before} messages accepted meanwhile`);
    });
  }
  running = false;
  await traffic;

  const lost = () => [...accepted].filter((id) => !received.has(id) && !bounced.has(id));
  /** Where a lost message was: its pair's nodes at the start, and when it was sent against each stop. */
  const describe = (id: string) => {
    const n = Number(id.slice(5));
    const at = sentAt.get(id) ?? 0;
    const when = stops.map(([node, from, to]) => `node ${node + 1} stop ${at < from ? `${from - at} ms before` : at <= to ? `during (+${at - from} ms)` : `${at - to} ms after`}`).join(', ');
    return `${id}: sender rs${n % PAIRS} (started on node ${(n % PAIRS) % 3 + 1}) to rr${n % PAIRS} (node ${((n % PAIRS) + 1) % 3 + 1}), ${n % 2 === 0 ? 'full' : 'bare'} JID; ${when}`;
  };
  await eventually('every accepted message is accounted for', () => lost().length === 0, WAIT_MS).catch(() => undefined);
  const duplicates = [...received.values()].filter((n) => n > 1).length;
  t.comment(`accepted ${accepted.size}, received ${received.size}, bounced ${bounced.size}, not acknowledged (resent by a real client) ${failed}, duplicates ${duplicates}`);
  // 0.1.0 closed its links without waiting for their acknowledgements, and closed its database
  // before what that sent to offline storage was written (0.2.0 waits for both): the stanzas an old
  // node had in flight while it stopped may be lost. Nothing else may be, at any other moment.
  const duringOldStop = (id: string) => oldStops.some(([from, to]) => (sentAt.get(id) ?? 0) >= from - 2000 && (sentAt.get(id) ?? 0) <= to);
  const lostByOldRelease = lost().filter(duringOldStop);
  if (restartFrom) t.comment(`lost while a node of the previous release stopped: ${lostByOldRelease.length}`);
  const lostNow = lost().filter((id) => !duringOldStop(id));
  for (const id of lostNow) {
    // Parked (stored offline while its receiver was online) or gone altogether?
    const receiver = `rr${Number(id.slice(5)) % PAIRS}@localhost`;
    const parked = (await cluster.storage.offline.fetch(receiver)).some((m) => m.stanzaXml.includes(`id="${id}"`) || m.stanzaXml.includes(`id='${id}'`));
    t.comment(`lost ${describe(id)}; ${parked ? 'in offline storage (parked for an online receiver)' : 'not in offline storage'}`);
    // What the nodes said of it (--debug delivery names each message's id on its way).
    for (const node of cluster.nodes) {
      for (const line of node.history.split('\n').filter((l) => l.includes(`id=${id} `) || l.endsWith(`id=${id}`))) t.comment(`  node ${node.index + 1}: ${line}`);
    }
  }
  t.same(lostNow, [], 'no message the server acknowledged was lost');
  t.ok(allOnline(), 'every client is connected at the end');
  const nodesOf = await Promise.all(cluster.nodes.map((n) => cluster.status(n.index)));
  t.same(nodesOf.map((s) => s.cluster?.nodesConnected?.length), [2, 2, 2], 'the three nodes see each other');
}

/** Automatic reconnection (as @xmpp/client does), each attempt to the node `pick` names. */
function reconnectThroughBalancer(client: XmppClient, pick: () => string): void {
  const c = client as unknown as Reconnecting & { on(event: 'disconnect', listener: () => void): void };
  c.reconnect.delay = 200;
  c.on('disconnect', () => {
    c.options.service = pick();
  });
  c.reconnect.start();
}
