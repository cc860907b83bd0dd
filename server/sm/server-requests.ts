import { randomBytes } from 'node:crypto';
import { Element } from 'ltx';
import type { JID } from '../jid';
import type { Router } from '../router';
import type { Session } from './session';

/** How long the server waits for a client's answer to its own IQ [10000 ms]. */
export const SERVER_REQUEST_TIMEOUT_MS = 10_000;

interface Pending {
  /** Who must answer: a local session, or a JID on another server. */
  session?: Session;
  remote?: string;
  resolve: (result: Element) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * IQs the server itself sends to a client resource bound on this node (e.g. XEP-0115 disco#info
 * for an unknown caps ver), and the answers it waits for. The answer is a client stanza on its
 * way out, so it is taken off the router's outbound path before routing (where a result to the
 * server would be dropped).
 */
export class ServerRequests {
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly router: Router) {
    router.addOutboundFilter((session, stanza) => {
      if (stanza.name !== 'iq' || this.pending.size === 0) return undefined;
      const type = stanza.attrs.type;
      if (type !== 'result' && type !== 'error') return undefined;
      const pending = this.pending.get(stanza.attrs.id as string);
      if (!pending || pending.session !== session) return undefined;
      this.settle(stanza.attrs.id as string);
      if (type === 'result') pending.resolve(stanza);
      else pending.reject(new Error(`${session.full} answered with an error`));
      return 'drop';
    });
    // The answer of another server's entity comes in over s2s, addressed to us.
    router.onResult((stanza, from) => {
      const pending = this.pending.get(stanza.attrs.id as string);
      if (!pending || pending.remote === undefined || pending.remote !== from.toString()) return false;
      this.settle(stanza.attrs.id as string);
      if (stanza.attrs.type === 'result') pending.resolve(stanza);
      else pending.reject(new Error(`${pending.remote} answered with an error`));
      return true;
    });
  }

  /**
   * Sends `<iq type='get'>` with `payload` from `from` (a served domain) to `to` on another server,
   * through the router; resolves with the result. In a cluster the answer comes back on whichever
   * node holds the remote server's stream: asked from another node, this times out.
   */
  requestRemote(to: JID, from: JID, payload: Element, timeoutMs = SERVER_REQUEST_TIMEOUT_MS): Promise<Element> {
    const id = `srv-${randomBytes(8).toString('hex')}`;
    const iq = new Element('iq', { type: 'get', id, from: from.toString(), to: to.toString() });
    iq.cnode(payload);
    return new Promise<Element>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.settle(id);
        reject(new Error(`${to} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      this.pending.set(id, { remote: to.toString(), resolve, reject, timer });
      void this.router.route(iq, from, to);
    });
  }

  /** Sends `<iq type='get'>` with `payload` from `from` (a served domain) to `session`; resolves with the result. */
  request(session: Session, from: string, payload: Element, timeoutMs = SERVER_REQUEST_TIMEOUT_MS): Promise<Element> {
    const id = `srv-${randomBytes(8).toString('hex')}`;
    const iq = new Element('iq', { type: 'get', id, from, to: session.full });
    iq.cnode(payload);
    return new Promise<Element>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.settle(id);
        reject(new Error(`${session.full} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      this.pending.set(id, { session, resolve, reject, timer });
      session.send(iq);
    });
  }

  private settle(id: string): void {
    const pending = this.pending.get(id);
    if (!pending) return;
    clearTimeout(pending.timer);
    this.pending.delete(id);
  }
}
