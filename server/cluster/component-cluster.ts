import type { Element } from 'ltx';
import type { ComponentCluster } from '../../components/component';
import { tryParseJID, type JID } from '../jid';
import type { Cluster } from './cluster';
import type { Ownership } from './ownership';

/**
 * A component's view of the cluster: its items' owners (Ownership, per component name), stanza
 * forwarding to the owner, and its own namespaced messages on the links.
 */
export function componentCluster(
  name: string,
  cluster: Cluster,
  ownership: Ownership,
  deliver: (stanza: Element, from: JID, to: JID, forwardedBy: string) => Promise<void>,
): ComponentCluster {
  const op = (suffix: string) => `${name}:${suffix}`;
  cluster.handle(op('stanza'), async (node, message) => {
    const stanza = message.getChildElements()[0];
    const from = tryParseJID(message.attrs.from ?? '');
    const to = tryParseJID(message.attrs.to ?? '');
    if (!stanza || !from || !to) return;
    stanza.parent = null;
    await deliver(stanza, from, to, node);
  });
  return {
    localNode: cluster.localNode,
    ownerOf: (item) => ownership.ownerOf(name, item),
    release: (item) => ownership.release(name, item),
    forward: (node, stanza, from, to) => cluster.send(node, op('stanza'), stanza, { from: from.toString(), to: to.toString() }),
    send: (node, suffix, payload, attrs) => cluster.send(node, op(suffix), payload, attrs),
    request: (node, suffix, payload, attrs, timeoutMs) => cluster.request(node, op(suffix), payload, attrs, timeoutMs),
    handle: (suffix, handler) => cluster.handle(op(suffix), handler),
    connectedNodes: () => cluster.connectedNodes(),
    onNodeUp: (listener) => cluster.onNodeUp(listener),
    onNodeDown: (listener) => cluster.onNodeDown((node) => listener(node)),
  };
}
