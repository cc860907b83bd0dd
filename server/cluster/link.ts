import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import { Element, escapeXML } from 'ltx';
import { StreamError } from '../errors';
import type { Logger } from '../log';
import type { ParserLimits } from '../xml/stream-parser';
import { TrustedStreamParser } from '../xml/trusted-stream-parser';
import { serialize } from '../xml/serialize';
import { CLUSTER_NS, PROTOCOL_VERSION, compatibleVersion } from './protocol';

/** Largest element on a link: client stanzas plus wrappers, and sync batches [4 MiB]. */
const LINK_LIMITS: ParserLimits = { maxStanzaSize: 4 * 1024 * 1024, maxXmlDepth: 64, maxAttributes: 64 };
/** Until the peer has proven who it is: the header and the proof are small [16 KiB, depth 4]. */
const HANDSHAKE_LIMITS: ParserLimits = { maxStanzaSize: 16 * 1024, maxXmlDepth: 4, maxAttributes: 16 };
/** Bytes waiting in a link's socket buffer before send() refuses more [16 MiB]. */
export const LINK_MAX_QUEUE_BYTES = 16 * 1024 * 1024;

export interface LinkOptions {
  localNode: string;
  /** This node's password as published in cluster_nodes. */
  ownPassword: string;
  /** --cluster-secret: never in the database, so reading the table is not enough to join. */
  secret?: string;
  /** The published password of a live node, undefined for an unknown one. */
  lookupPassword(node: string): Promise<string | undefined>;
  heartbeatMs: number;
  timeoutMs: number;
  logger: Logger;
}

export interface LinkEvents {
  ready(link: ClusterLink): void;
  /** A counted message; `seq` is its number on this link (1, 2, ...), as the sender numbered it. */
  message(link: ClusterLink, element: Element, seq: number): void;
  /** A chunk of input is about to be parsed and its messages dispatched. */
  chunkStart(link: ClusterLink): void;
  /** Every message of that chunk has been dispatched (synchronous handling is done). */
  chunkHandled(link: ClusterLink): void;
  /** The peer has handled our messages 1..handled; `misses` are those among them that found no recipient. */
  ack(link: ClusterLink, handled: number, misses: number[]): void;
  closed(link: ClusterLink, reason: string): void;
}

type LinkState = 'handshake' | 'ready' | 'closed';

/**
 * One authenticated, ordered connection between two nodes: an XML stream `<cluster/>` whose
 * children are messages. The handshake proves, in both directions, knowledge of the other node's
 * published password and of the shared secret (HMAC over both nonces), and checks the protocol
 * version (same major version interoperates: rolling upgrades). Heartbeats find a dead peer
 * within timeoutMs.
 *
 * After the handshake every message is numbered implicitly, in order, on both sides (as XEP-0198
 * counts stanzas): the receiver acknowledges cumulatively with `<a h='N'/>` once it has handled
 * messages 1..N, so the sender knows exactly which tail is unacknowledged when the link is lost.
 * Heartbeats and acknowledgements are not counted.
 */
export class ClusterLink {
  peer: string;
  peerVersion = '';
  private state: LinkState = 'handshake';
  private readonly nonce = randomBytes(18).toString('base64');
  private peerNonce = '';
  /** Peers are our own nodes, which serialise what their strict client parsers accepted. */
  private parser: TrustedStreamParser;
  private lastReceived = Date.now();
  private lastSent = Date.now();
  /** What this turn of the event loop wrote, sent in one write() once its I/O callbacks have run. */
  private outgoing: string[] = [];
  private outgoingBytes = 0;
  private tickFlushScheduled = false;
  private turnFlushScheduled = false;
  /** Input that came too late: only acknowledgements are taken from it. */
  private discarding = false;
  /** Messages sent and received on this link since the handshake (their sequence numbers). */
  private sentCount = 0;
  private receivedCount = 0;
  private readonly timer: NodeJS.Timeout;
  readonly counters = { stanzasIn: 0, stanzasOut: 0, bytesIn: 0, bytesOut: 0 };

  private constructor(
    private readonly socket: net.Socket,
    private readonly dialer: boolean,
    expectedPeer: string,
    private readonly opts: LinkOptions,
    private readonly events: LinkEvents,
  ) {
    this.peer = expectedPeer;
    socket.setNoDelay(true);
    socket.on('error', (err) => this.close(`socket error: ${err.message}`));
    socket.on('close', () => this.close('connection closed'));
    socket.on('data', (chunk: Buffer) => this.feed(chunk));
    this.parser = new TrustedStreamParser(HANDSHAKE_LIMITS, {
      streamStart: (name, attrs) => void this.onHeader(name, attrs).catch((err) => this.close(String(err))),
      element: (element) => this.onElement(element),
      streamEnd: () => this.close('peer closed the link'),
    });
    this.timer = setInterval(() => this.tick(), Math.max(50, Math.min(opts.heartbeatMs, opts.timeoutMs / 3))).unref();
  }

  /** Dials a peer; the link reports ready or closed through `events`. */
  static dial(peer: { hostname: string; address: string; port: number }, opts: LinkOptions, events: LinkEvents): ClusterLink {
    const socket = net.connect({ host: peer.address, port: peer.port });
    const link = new ClusterLink(socket, true, peer.hostname, opts, events);
    socket.once('connect', () => link.writeHeader(peer.hostname));
    return link;
  }

  /** Takes an incoming connection; the peer names itself in its header. */
  static accept(socket: net.Socket, opts: LinkOptions, events: LinkEvents): ClusterLink {
    return new ClusterLink(socket, false, '', opts, events);
  }

  get ready(): boolean {
    return this.state === 'ready';
  }

  /** Names what this node sends on this link (its nonce): the peer knows it as `peerId`. */
  get id(): string {
    return this.nonce;
  }

  /** Names what the peer sends on this link. */
  get peerId(): string {
    return this.peerNonce;
  }

  get queuedBytes(): number {
    return this.socket.writableLength + this.outgoingBytes;
  }

  /**
   * Sends one counted message and returns its sequence number; 0 when the link is down or its
   * socket queue is full (the caller re-routes: nothing is dropped silently).
   *
   * A message leaves before anything this turn writes to a client, as if written at once, so no
   * client hears of an effect (a block, a bound session, an answer) before the peers do. With
   * `batched` (routed stanzas, the bulk of a busy link, of which clients hear nothing from this
   * node) it may wait for the end of the turn's I/O callbacks, to leave with the next ones in one
   * write(); an unbatched message sends the waiting ones ahead of it, in order.
   */
  send(element: Element, batched = false): number {
    if (this.state !== 'ready' || this.queuedBytes > LINK_MAX_QUEUE_BYTES) return 0;
    this.counters.stanzasOut++;
    this.write(serialize(element), batched);
    return ++this.sentCount;
  }

  /**
   * Tells the peer we have handled its messages 1..handled (`misses` found no recipient here),
   * handed to the socket at once, right after the deliveries it covers: the window in which a
   * node killed would leave delivered stanzas unacknowledged is as short as it can be.
   */
  acknowledge(handled: number, misses: number[]): void {
    if (this.state !== 'ready') return;
    const attrs: Record<string, string> = { h: String(handled) };
    if (misses.length > 0) attrs.miss = misses.join(' ');
    this.write(serialize(new Element('a', attrs)));
    this.flush();
  }

  close(reason: string): void {
    if (this.state === 'closed') return;
    const wasReady = this.state === 'ready';
    this.state = 'closed';
    clearInterval(this.timer);
    if (!this.socket.destroyed) {
      this.flush();
      if (this.socket.writable) this.socket.end('</cluster>');
      setTimeout(() => this.socket.destroy(), 1000).unref();
    }
    this.opts.logger.debug('cluster link closed', { peer: this.peer, reason, wasReady });
    this.events.closed(this, reason);
  }

  // ---- handshake ----

  private writeHeader(to: string): void {
    this.write(
      `<cluster xmlns='${CLUSTER_NS}' from='${escapeXML(this.opts.localNode)}' to='${escapeXML(to)}' version='${PROTOCOL_VERSION}' nonce='${this.nonce}'>`,
    );
  }

  private async onHeader(name: string, attrs: Record<string, string>): Promise<void> {
    if (name !== 'cluster' || attrs.xmlns !== CLUSTER_NS) return this.fail('bad-protocol');
    if (!compatibleVersion(attrs.version)) return this.fail('unsupported-version', `ours ${PROTOCOL_VERSION}, theirs ${attrs.version}`);
    if (attrs.to !== this.opts.localNode) return this.fail('wrong-node', `this is ${this.opts.localNode}, not ${attrs.to}`);
    if (!attrs.nonce) return this.fail('bad-protocol');
    this.peerVersion = attrs.version;
    this.peerNonce = attrs.nonce;
    if (this.dialer) {
      if (attrs.from !== this.peer) return this.fail('wrong-node', `dialled ${this.peer}, answered by ${attrs.from}`);
      const peerPassword = await this.opts.lookupPassword(this.peer);
      if (!peerPassword) return this.fail('unknown-node', `${this.peer} is not in cluster_nodes`);
      this.sendRaw(new Element('auth', { proof: this.proof(peerPassword, 'dial') }));
    } else {
      const peer = attrs.from ?? '';
      // Refuse nodes that are not live rows of cluster_nodes (DESIGN: "refuses unknown nodes").
      if (!peer || !(await this.opts.lookupPassword(peer))) return this.fail('unknown-node', `${peer} is not in cluster_nodes`);
      this.peer = peer;
      this.writeHeader(peer);
    }
  }

  private async onAuth(element: Element): Promise<void> {
    const proof = String(element.attrs.proof ?? '');
    // Each side proves it holds the other's published password and the shared secret.
    const expected = this.proof(this.opts.ownPassword, this.dialer ? 'accept' : 'dial');
    if (!safeEqual(proof, expected)) return this.fail('not-authorized', 'handshake proof does not match (wrong --cluster-secret?)');
    if (!this.dialer) {
      const peerPassword = await this.opts.lookupPassword(this.peer);
      if (!peerPassword) return this.fail('unknown-node');
      this.sendRaw(new Element('auth', { proof: this.proof(peerPassword, 'accept') }));
    }
    this.state = 'ready';
    this.parser.limits = LINK_LIMITS;
    this.opts.logger.debug('cluster link up', { peer: this.peer, dialer: this.dialer, version: this.peerVersion });
    this.events.ready(this);
  }

  /** HMAC-SHA-256 keyed with the verifying side's password and the secret, over role, names and both nonces. */
  private proof(verifierPassword: string, role: 'dial' | 'accept'): string {
    const key = createHash('sha256').update(`${verifierPassword}\0${this.opts.secret ?? ''}`).digest();
    const [dialer, acceptor] = this.dialer ? [this.opts.localNode, this.peer] : [this.peer, this.opts.localNode];
    const [dialNonce, acceptNonce] = this.dialer ? [this.nonce, this.peerNonce] : [this.peerNonce, this.nonce];
    return createHmac('sha256', key).update(`${role}\0${dialer}\0${acceptor}\0${dialNonce}\0${acceptNonce}`).digest('base64');
  }

  private fail(reason: string, text?: string): void {
    this.opts.logger.warn('cluster link refused', { peer: this.peer || undefined, reason, text });
    if (this.socket.writable) {
      const failure = new Element('failure', { reason });
      if (text) failure.t(text);
      this.write(failure.toString());
    }
    this.close(`${reason}${text ? `: ${text}` : ''}`);
  }

  // ---- traffic ----

  private onElement(element: Element): void {
    if (this.state === 'closed') return;
    if (element.name === 'failure') {
      // Operators look for this on both sides when a node does not join.
      this.opts.logger.warn('cluster link refused by peer', { peer: this.peer || undefined, reason: element.attrs.reason, text: element.getText() || undefined });
      return this.close(`refused by peer: ${element.attrs.reason} ${element.getText()}`.trim());
    }
    if (this.state === 'handshake') {
      if (element.name === 'auth') {
        void this.onAuth(element).catch((err) => this.close(String(err)));
        return;
      }
      return this.fail('bad-protocol', `<${element.name}/> before the handshake ended`);
    }
    if (element.name === 'hb') return;
    if (element.name === 'a') {
      const handled = Number(element.attrs.h);
      if (!Number.isSafeInteger(handled) || handled < 0 || handled > this.sentCount) return this.fail('bad-protocol', `acknowledgement of ${element.attrs.h} messages, ${this.sentCount} sent`);
      const misses = element.attrs.miss ? String(element.attrs.miss).split(' ').map(Number) : [];
      this.events.ack(this, handled, misses);
      return;
    }
    if (this.discarding) return;
    this.counters.stanzasIn++;
    this.events.message(this, element, ++this.receivedCount);
  }

  private feed(chunk: Buffer): void {
    const now = Date.now();
    // A link silent for longer than the timeout is dead for the peer too, even if our own timer
    // has not fired yet (this process was frozen, e.g. SIGSTOP, or starved): the peer has already
    // re-routed what it sent, so bytes that waited in our socket buffer must not be delivered late.
    if (this.state === 'ready' && now - this.lastReceived > this.opts.timeoutMs) {
      // Its acknowledgements still count: they tell which of our messages the peer handled, so
      // fewer are re-routed (and delivered twice). Only its messages are dropped.
      this.discarding = true;
      try {
        this.parser.write(chunk);
      } catch {
        // Closing anyway.
      }
      this.close(`no traffic for ${now - this.lastReceived} ms (stale input discarded)`);
      return;
    }
    this.lastReceived = now;
    this.counters.bytesIn += chunk.length;
    const ready = this.state === 'ready';
    if (ready) this.events.chunkStart(this);
    try {
      this.parser.write(chunk);
    } catch (err) {
      this.fail(err instanceof StreamError ? err.condition : 'bad-protocol', err instanceof Error ? err.message : undefined);
    }
    if (ready) this.events.chunkHandled(this);
  }

  private tick(): void {
    const now = Date.now();
    if (now - this.lastReceived > this.opts.timeoutMs) {
      // After this turn's input has been read: a starved process (not the peer) finds the peer's
      // latest acknowledgements waiting there, and takes them (see feed) before closing.
      setImmediate(() => {
        if (Date.now() - this.lastReceived > this.opts.timeoutMs) this.close(`no traffic for ${this.opts.timeoutMs} ms`);
      });
      return;
    }
    if (this.state === 'ready' && now - this.lastSent >= this.opts.heartbeatMs) this.write('<hb/>');
  }

  private sendRaw(element: Element): void {
    this.write(serialize(element));
  }

  private write(data: string, batched = false): void {
    if (this.socket.destroyed || !this.socket.writable) return;
    this.lastSent = Date.now();
    const bytes = Buffer.byteLength(data);
    this.counters.bytesOut += bytes;
    this.outgoing.push(data);
    this.outgoingBytes += bytes;
    if (!batched) {
      // With the writes of this tick, as client sockets' corked writes are (transports/tcp.ts).
      if (!this.tickFlushScheduled) {
        this.tickFlushScheduled = true;
        process.nextTick(this.flushNow);
      }
    } else if (!this.turnFlushScheduled) {
      // After every I/O callback of this turn (check phase): a busy node routes the stanzas of many
      // client reads per turn, and each write() to a loopback or LAN socket costs a system call
      // whose price hardly depends on its size.
      this.turnFlushScheduled = true;
      setImmediate(this.flushTurn);
    }
  }

  private readonly flushNow = (): void => {
    this.tickFlushScheduled = false;
    this.flush();
  };

  private readonly flushTurn = (): void => {
    this.turnFlushScheduled = false;
    this.flush();
  };

  /** Hands what was written to the socket now. */
  private flush(): void {
    if (this.outgoing.length === 0) return;
    const data = this.outgoing.length === 1 ? this.outgoing[0] : this.outgoing.join('');
    this.outgoing = [];
    this.outgoingBytes = 0;
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(data);
  }
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
