import type { XmppClient } from './client';
import { eventually, startCluster, type TestCluster } from './cluster';
import type { TapTest } from './databases';
import { NumberedTraffic, type Pair } from './numbered-traffic';

/** Messages per second offered in total by the failure tests [1200]. */
export const OFFERED_RATE = 1200;
/** Sender/receiver pairs [20]; the first VICTIM_RECEIVERS receivers are on the victim node. */
export const PAIRS = 20;
export const VICTIM_RECEIVERS = 16;

export interface FailoverSetup {
  traffic: NumberedTraffic;
  pairs: Pair[];
  /** The receivers logged in on the victim (index `victim`), by pair index. */
  victimReceivers: number[];
}

/**
 * 20 pairs of real clients: senders on the survivors, most receivers on `victim`, each sender a
 * contact-less stranger to its receiver (plain chat, as between colleagues on one server).
 */
export async function failoverPairs(cluster: TestCluster, victim: number, tag: string): Promise<FailoverSetup> {
  const survivors = cluster.nodes.map((n) => n.index).filter((i) => i !== victim);
  const pairs: Pair[] = [];
  const victimReceivers: number[] = [];
  for (let i = 0; i < PAIRS; i++) {
    await cluster.addUser(`${tag}s${i}`);
    await cluster.addUser(`${tag}r${i}`);
    const receiverNode = i < VICTIM_RECEIVERS ? victim : survivors[i % survivors.length];
    if (receiverNode === victim) victimReceivers.push(i);
    const receiver: XmppClient = await cluster.login(receiverNode, `${tag}r${i}`, { resource: 'phone' });
    const sender: XmppClient = await cluster.login(survivors[i % survivors.length], `${tag}s${i}`, { resource: 'desk' });
    pairs.push({ sender, receiver, to: `${tag}r${i}@localhost/phone` });
  }
  return { traffic: new NumberedTraffic(pairs), pairs, victimReceivers };
}

/** The node the failure tests kill or freeze: node 3. */
export const VICTIM = 2;

/**
 * Three real nodes on `dbUri` with the failover pairs logged in, ready for traffic. `tag`
 * prefixes the users, so each strategy's run has its own.
 */
export async function startFailoverCluster(t: TapTest, dbUri: string, strategy: string, tag: string): Promise<FailoverSetup & { cluster: TestCluster }> {
  const cluster = await startCluster(t, { nodes: 3, dbUri, strategy });
  return { cluster, ...(await failoverPairs(cluster, VICTIM, tag)) };
}

/** Waits until `count` more messages have been sent (time measured in traffic, not sleeps). */
export function sentAtLeast(traffic: NumberedTraffic, count: number, ms = 60000): Promise<void> {
  return eventually(`${count} messages sent`, () => traffic.sent.size >= count, ms);
}
