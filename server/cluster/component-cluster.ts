import type { Element } from 'ltx';
import type { ComponentCluster } from '../../components/component';
import { tryParseJID, type JID } from '../jid';
import { LINK } from './catalogue';
import type { Logger } from '../log';
import type { Cluster } from './cluster';
import type { Ownership } from './ownership';

/** The component message that carries a stanza to the item's owner node. */
const STANZA_OP = 'stanza';

/**
 * A component's view of the cluster: its items' owners (Ownership, per component name), stanza
 * forwarding to the owner, and its own messages on the links (kind `component`, kept apart by
 * the component's name).
 */
export function componentCluster(
  name: string,
  cluster: Cluster,
  ownership: Ownership,
  deliver: (stanza: Element, from: JID, to: JID, forwardedBy?: string, home?: string) => Promise<void>,
  logger: Logger,
): ComponentCluster {
  const component = (op: string, attrs: Record<string, string> = {}) => ({ ...attrs, c: name, op });
  cluster.handleComponent(name, STANZA_OP, async (node, message) => {
    const stanza = message.getChildElements()[0];
    const from = tryParseJID(message.attrs.from ?? '');
    const to = tryParseJID(message.attrs.to ?? '');
    if (!stanza || !from || !to) return;
    stanza.parent = null;
    await deliver(stanza, from, to, node, message.attrs.home);
  });
  return {
    localNode: cluster.localNode,
    ownerOf: (item) => ownership.ownerOf(name, item),
    release: (item) => ownership.release(name, item),
    successorOf: (item) => ownership.successorOf(item),
    claim: (item) => ownership.claim(name, item),
    claimedBy: (item) => ownership.claimedBy(name, item),
    handOver: (item, to) => ownership.handOver(name, item, to),
    tookOver: (item) => ownership.tookOver(name, item),
    onMoved: (listener) => ownership.onMoved((service, item, from, to) => service === name && listener(item, from, to)),
    forward: (node, stanza, from, to, home) =>
      cluster.sendTracked(node, LINK.component, stanza, component(STANZA_OP, { from: from.toString(), to: to.toString(), ...(home ? { home } : {}) }), () => {
        // The peer went down before it took the stanza: handled here afresh, the component finds
        // the item's next owner or answers with an error. Nothing accepted is lost silently.
        deliver(stanza, from, to, undefined, home).catch((err) => logger.error('stanza not handled again after its link was lost', { component: name, err: String(err) }));
      }),
    send: (node, op, payload, attrs) => cluster.send(node, LINK.component, payload, component(op, attrs)),
    request: (node, op, payload, attrs, timeoutMs) => cluster.request(node, LINK.component, payload, component(op, attrs), timeoutMs),
    handle: (op, handler) => cluster.handleComponent(name, op, handler),
    connectedNodes: () => cluster.connectedNodes(),
    onNodeUp: (listener) => cluster.onNodeUp(listener),
    onNodeDown: (listener) => cluster.onNodeDown((node) => listener(node)),
  };
}
