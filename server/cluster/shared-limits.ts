import { Element } from 'ltx';
import type { AddressLimits, AddressReport } from '../transports/address-limits';
import { LINK } from './catalogue';
import type { Cluster } from './cluster';

/** Seconds between two reports of a node's busy client addresses to its peers [1]. */
const REPORT_INTERVAL_S = 1;

/**
 * Connection limits per client address over the whole cluster: every second each node tells its
 * peers which addresses hold or open many connections on it (AddressLimits.report), and counts
 * theirs against its own limits. A limit is thus enforced cluster-wide within about a second.
 * A peer's last report stands until the next, so an empty report after an empty one is not sent:
 * a quiet cluster exchanges none (they were N(N-1) link messages a second).
 * Returns the function that stops the reports.
 */
export function shareAddressLimits(cluster: Cluster, limits: AddressLimits): () => void {
  cluster.handle(LINK.limits, (from, message) => {
    const reports: AddressReport[] = message.getChildren('a').flatMap((a) => {
      const [open, waiting, opened] = [Number(a.attrs.open), Number(a.attrs.waiting ?? 0), Number(a.attrs.opened)];
      return a.attrs.ip && [open, waiting, opened].every(Number.isSafeInteger) ? [{ address: a.attrs.ip as string, open, waiting, opened }] : [];
    });
    limits.peerReport(from, reports);
  });
  /** Peers whose last report from us was empty (and was taken by the link). */
  const toldEmpty = new Set<string>();
  cluster.onNodeDown((node) => {
    limits.peerGone(node);
    toldEmpty.delete(node);
  });
  const timer = setInterval(() => {
    const peers = cluster.connectedNodes();
    const reports = limits.report(peers.length + 1);
    if (peers.length === 0) return;
    // An element belongs to one message: each peer gets its own.
    const payload = () => reports.map((r) => new Element('a', { ip: r.address, open: String(r.open), waiting: String(r.waiting), opened: String(r.opened) }));
    for (const peer of peers) {
      if (reports.length === 0 && toldEmpty.has(peer)) continue;
      const sent = cluster.send(peer, LINK.limits, payload());
      if (reports.length === 0 && sent) toldEmpty.add(peer);
      else toldEmpty.delete(peer);
    }
  }, REPORT_INTERVAL_S * 1000);
  timer.unref();
  return () => clearInterval(timer);
}
