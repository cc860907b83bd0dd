import type { Element } from 'ltx';
import type tls from 'node:tls';
import type { StreamError } from '../errors';

export type TransportKind = 'tcp' | 'websocket' | 'bosh';

/**
 * What a transport (TCP/TLS, WebSocket, BOSH) offers the one stream state machine: framing of
 * outgoing data and connection control. Transports only adapt bytes and framing; they never
 * interpret stanzas (DESIGN: "Transports only adapt bytes and framing").
 */
export interface Transport {
  /** Connection id that appears in every log line about this connection, e.g. "c2s-17". */
  readonly id: string;
  readonly kind: TransportKind;
  readonly remoteAddress: string;
  /** Whether the connection is encrypted now (TLS, wss, https, or a trusted TLS-terminating proxy). */
  readonly secure: boolean;
  /** Whether STARTTLS can be offered (plain TCP that has not upgraded yet). */
  readonly canStartTls: boolean;
  /** Opens (or re-opens after a restart) the server's side of the stream. */
  sendHeader(attrs: Record<string, string>): void;
  /** Called once the client has authenticated: the per-address limits stop counting it as waiting to log in. */
  authenticated?: () => void;
  send(element: Element): void;
  /** Hands what send() queued in this tick to the socket now rather than at the end of the tick (optional). */
  flush?(): void;
  /**
   * Undefined when everything sent so far is in the kernel's hands; otherwise resolves once it is
   * (or the connection is gone). Optional: a transport without it counts as written.
   */
  whenWritten?(): Promise<void> | undefined;
  /** Sends the stream error (if any) and the closing of the stream, then closes the connection. */
  close(error?: StreamError): void;
  /** Upgrades to TLS (RFC 6120 §5.4.3.3), resetting the parser; resolves once the handshake is done. */
  startTls(): Promise<void>;
  /** Resets the parser for a stream restart (RFC 6120 §6.4.6: after SASL success). */
  restart(): void;
  /** Channel-binding data of the given type (RFC 5929/9266), undefined when not available. */
  channelBinding(type: string): Buffer | undefined;
  /** Channel-binding types this connection can provide (XEP-0440). */
  channelBindingTypes(): string[];
  /**
   * Stops (true) or goes back to (false) reading from the connection, so that TCP slows the client
   * down while the node cannot keep up (ArchiveBacklog). Optional: BOSH has no connection to stop.
   */
  pauseReading?(paused: boolean): void;
  /** The certificate the peer presented in the TLS handshake, when it was asked for one (server-to-server). */
  peerCertificate?(): PeerCertificate | undefined;
}

/** A peer's TLS certificate and whether its chain leads to a trusted CA (the names are checked by whoever asks). */
export interface PeerCertificate {
  /** The chain is valid and trusted. */
  trusted: boolean;
  /** Why it is not, as OpenSSL says (e.g. SELF_SIGNED_CERT_IN_CHAIN). */
  reason?: string;
  certificate: tls.PeerCertificate;
}

/** What a transport tells the stream about (the stream implements this). */
export interface TransportListener {
  /** The client opened (or re-opened) its stream; the transport has checked the framing namespaces. */
  streamStart(attrs: Record<string, string>): void;
  element(element: Element): void;
  streamEnd(): void;
  /** A parse or framing error: the stream answers with this stream error and closes. */
  streamError(error: StreamError): void;
  /** The connection is gone (after close() or because the peer went away). Called once. */
  closed(reason: string): void;
}
