import { Element } from 'ltx';
import { LINK } from '../cluster/catalogue';
import type { Cluster } from '../cluster/cluster';
import { StreamError } from '../errors';
import { tryParseJID } from '../jid';
import { cloneElement } from '../router';
import type { Logger } from '../log';
import type { Session } from './session';
import type { SessionManager } from './session-manager';

/** One session as an operator sees it (XEP-0133 user-stats, xmppctl sessions). */
export interface SessionInfo {
  jid: string;
  /** The cluster node it is bound on. */
  node: string;
  /** The client's IP address, while connected. */
  address?: string;
  /** tcp, websocket, bosh, or waiting (stream management, connection lost). */
  transport: string;
  /** When it was bound (ISO 8601). */
  since: string;
  /** Sent available presence (RFC 6121 §4.2). */
  available: boolean;
}

/** What a cluster-wide operation did, and the nodes that did not answer (their part is missing). */
export interface Outcome<T> {
  result: T;
  unanswered: string[];
}

/** How long a node waits for each peer's part of an admin operation [10000 ms]. */
const PEER_TIMEOUT_MS = 10_000;

/**
 * The operator's view of and hand on sessions, on every node of the cluster (XEP-0133 commands,
 * xmppctl): list them, end them, tell every online user something. Each node does its part on its
 * own sessions; the node asked gathers the parts over the cluster links. On a single node the
 * cluster is absent and only the local part runs.
 */
export class SessionAdmin {
  constructor(
    private readonly sessions: SessionManager,
    private readonly localNode: string,
    private readonly cluster: Cluster | undefined,
    private readonly logger: Logger,
  ) {
    cluster?.handle(LINK.admin, (_from, msg) => this.handlePeer(msg));
  }

  /** Sessions of `user` (a bare JID), or of every user of `domain`, on every node. */
  async list(filter: { user?: string; domain?: string }): Promise<Outcome<SessionInfo[]>> {
    const attrs: Record<string, string> = { op: 'list' };
    if (filter.user) attrs.user = filter.user;
    if (filter.domain) attrs.domain = filter.domain;
    const { parts, unanswered } = await this.everywhere(attrs, undefined, () => this.listHere(filter).map(encodeInfo));
    return { result: parts.flat().map(decodeInfo).sort((a, b) => a.jid.localeCompare(b.jid)), unanswered };
  }

  /** Ends the sessions of these bare or full JIDs on every node, with a stream error saying `reason`. */
  async end(jids: string[], reason: string): Promise<Outcome<SessionInfo[]>> {
    const payload = jids.map((jid) => new Element('j').t(jid));
    const { parts, unanswered } = await this.everywhere({ op: 'end', reason }, payload, () => this.endHere(jids, reason).map(encodeInfo));
    return { result: parts.flat().map(decodeInfo), unanswered };
  }

  /** Sends `message` (without `to`) to every available session of `domain`'s users; how many got it. */
  async announce(domain: string, message: Element): Promise<Outcome<number>> {
    const { parts, unanswered } = await this.everywhere({ op: 'announce', domain }, [message], () => [
      new Element('n', { count: String(this.announceHere(domain, message)) }),
    ]);
    return { result: parts.flat().reduce((sum, n) => sum + Number(n.attrs.count ?? 0), 0), unanswered };
  }

  /** Runs `here` on this node and the same operation on every live peer; every part, and who failed. */
  private async everywhere(attrs: Record<string, string>, payload: Element[] | undefined, here: () => Element[]): Promise<{ parts: Element[][]; unanswered: string[] }> {
    const parts: Element[][] = [here()];
    const unanswered: string[] = [];
    if (!this.cluster) return { parts, unanswered };
    const cluster = this.cluster;
    const peers = cluster.liveNodes().filter((node) => node !== this.localNode);
    await Promise.all(
      peers.map(async (node) => {
        try {
          const res = await cluster.request(node, LINK.admin, payload?.map(cloneElement), attrs, PEER_TIMEOUT_MS);
          parts.push(res.getChildElements());
        } catch (err) {
          this.logger.warn('admin operation: a node did not answer', { op: attrs.op, peer: node, err: String(err) });
          unanswered.push(node);
        }
      }),
    );
    return { parts, unanswered: unanswered.sort() };
  }

  private handlePeer(msg: Element): Element[] {
    switch (msg.attrs.op) {
      case 'list':
        return this.listHere({ user: msg.attrs.user, domain: msg.attrs.domain }).map(encodeInfo);
      case 'end':
        return this.endHere(msg.getChildren('j').map((j) => j.getText()), String(msg.attrs.reason ?? '')).map(encodeInfo);
      case 'announce': {
        const message = msg.getChildElements()[0];
        const count = message && msg.attrs.domain ? this.announceHere(msg.attrs.domain, message) : 0;
        return [new Element('n', { count: String(count) })];
      }
      default:
        throw new Error(`unknown admin operation ${msg.attrs.op}`);
    }
  }

  private listHere(filter: { user?: string; domain?: string }): SessionInfo[] {
    const found = filter.user ? this.sessions.resources(filter.user) : [...this.sessions.all()];
    return found.filter((s) => !filter.domain || s.jid.domain === filter.domain).map((s) => this.info(s));
  }

  private endHere(jids: string[], reason: string): SessionInfo[] {
    const ended: SessionInfo[] = [];
    for (const text of jids) {
      const jid = tryParseJID(text);
      if (!jid) continue;
      const targets = jid.resource ? [this.sessions.get(jid)].filter((s): s is Session => s !== undefined) : this.sessions.resources(jid.bareString());
      for (const session of targets) {
        ended.push(this.info(session));
        // Ended first, so that a stream-managed session does not wait to be resumed: what it had
        // not acknowledged goes to the user's other resources or offline storage (RFC 6121).
        this.sessions.end(session);
        session.sink.close(new StreamError('policy-violation', reason));
        this.logger.info('session ended by an administrator', { jid: session.full, reason });
      }
    }
    return ended;
  }

  private announceHere(domain: string, message: Element): number {
    let count = 0;
    for (const session of this.sessions.all()) {
      if (session.jid.domain !== domain || !session.available) continue;
      const copy = cloneElement(message);
      copy.attrs.to = session.full;
      session.sink.send(copy);
      count++;
    }
    return count;
  }

  private info(session: Session): SessionInfo {
    const sink = session.sink.describe?.() ?? { transport: 'unknown' };
    return { jid: session.full, node: this.localNode, address: sink.address, transport: sink.transport, since: session.since.toISOString(), available: session.available };
  }
}

function encodeInfo(info: SessionInfo): Element {
  const attrs: Record<string, string> = { jid: info.jid, node: info.node, transport: info.transport, since: info.since, available: info.available ? '1' : '0' };
  if (info.address) attrs.address = info.address;
  return new Element('s', attrs);
}

function decodeInfo(el: Element): SessionInfo {
  const a = el.attrs as Record<string, string>;
  return { jid: a.jid, node: a.node, address: a.address, transport: a.transport, since: a.since, available: a.available === '1' };
}
