import { Element } from 'ltx';
import type { RequestInfo } from '../http/request-info';
import type { BoshSessions } from '../transports/bosh';
import { MAX_WAIT_SECONDS } from '../transports/bosh-session';
import { LINK } from './catalogue';
import type { Cluster } from './cluster';

/** A forwarded request may be held for the longest BOSH wait, plus room for the round trip [+10 s]. */
const FORWARD_TIMEOUT_MS = (MAX_WAIT_SECONDS + 10) * 1000;

/**
 * DESIGN: "a request that lands on a node that does not own its session is forwarded over the
 * cluster link to the owner, so stickiness is an optimisation, not a requirement". The sid names
 * its owner; the owner answers the request as if it had come in directly, long-poll included.
 */
export function forwardBoshRequests(cluster: Cluster, bosh: BoshSessions): void {
  bosh.setForwarder(async (owner, body, info) => {
    if (!cluster.isConnected(owner)) return undefined;
    cluster.counters.boshForwarded++;
    const attrs: Record<string, string> = { secure: info.secure ? '1' : '0', remote: info.remoteAddress, host: info.host };
    try {
      const res = await cluster.request(owner, LINK.bosh, body, attrs, FORWARD_TIMEOUT_MS);
      const response = res.getChild('response');
      if (!response) return undefined;
      return { status: Number(response.attrs.status) || 200, contentType: String(response.attrs.type), body: response.getText() };
    } catch {
      return undefined; // owner gone: the client gets item-not-found and starts a new session
    }
  });
  cluster.handle(LINK.bosh, async (_from, message) => {
    const body = message.getChildElements()[0];
    if (!body) return new Element('response', { status: '400', type: 'text/plain' }).t('bad request');
    body.parent = null;
    // The forwarding node already decided how far to trust the request's origin.
    const info: RequestInfo = { secure: message.attrs.secure === '1', remoteAddress: String(message.attrs.remote ?? ''), host: String(message.attrs.host ?? ''), proxied: true };
    const response = await bosh.handle(body, info);
    return new Element('response', { status: String(response.status), type: response.contentType }).t(response.body);
  });
}
