import { createHash } from 'crypto';
import type { TLSSocket } from 'tls';
import { CHANNEL_BINDING_TYPES } from './mechanism';

/**
 * Channel-binding data of the server side of a TLS connection, for SCRAM-*-PLUS, or undefined
 * when the connection cannot provide that type.
 * - tls-exporter (RFC 9266): TLS 1.3 only (on TLS 1.2 it is safe only with extended master secret).
 * - tls-unique (RFC 5929 §3.1): "the first TLS Finished message sent ... in the most recent TLS
 *   handshake". RFC 9266 leaves it undefined for TLS 1.3, but clients built on OpenSSL's
 *   SSL_get_finished (CPython's ssl, hence slixmpp's default SCRAM-SHA-*-PLUS) compute it there
 *   too, as on TLS 1.2: the client's Finished, or the server's after a resumed handshake. We compute
 *   the same (as Prosody does in practice), so such clients log in with their defaults; on TLS 1.3
 *   it is accepted but not advertised (availableChannelBindings).
 * - tls-server-end-point (RFC 5929 §4.1): hash of our certificate.
 */
export function channelBindingFor(socket: TLSSocket, type: string): Buffer | undefined {
  const protocol = socket.getProtocol();
  if (!protocol || !socket.encrypted) return undefined;
  switch (type) {
    case 'tls-exporter':
      if (protocol !== 'TLSv1.3') return undefined;
      return socket.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0));
    case 'tls-unique':
      if (!/^(TLSv1(\.[123])?|SSLv3)$/.test(protocol)) return undefined;
      // In a full handshake the client sends the first Finished; in an abbreviated (resumed)
      // handshake the server does. (On TLS 1.3 the server's comes first on the wire, but clients
      // take the same two messages as on TLS 1.2; see above.)
      return (socket.isSessionReused() ? socket.getFinished() : socket.getPeerFinished()) ?? undefined;
    case 'tls-server-end-point':
      return serverEndPoint(socket);
    default:
      return undefined;
  }
}

/** The channel-binding types this connection advertises, in preference order (XEP-0440): tls-unique not on TLS 1.3. */
export function availableChannelBindings(socket: TLSSocket): string[] {
  const tls13 = socket.getProtocol() === 'TLSv1.3';
  return CHANNEL_BINDING_TYPES.filter((type) => !(tls13 && type === 'tls-unique') && channelBindingFor(socket, type) !== undefined);
}

/** Signature algorithm OIDs (DER content, hex) and the hash RFC 5929 §4.1 uses for each. */
const END_POINT_HASH: Record<string, string> = {
  '2a864886f70d010104': 'sha256', // md5WithRSAEncryption: "MD5 or SHA-1: use SHA-256"
  '2a864886f70d010105': 'sha256', // sha1WithRSAEncryption
  '2a864886f70d01010b': 'sha256',
  '2a864886f70d01010c': 'sha384',
  '2a864886f70d01010d': 'sha512',
  '2a864886f70d01010e': 'sha224',
  '2a8648ce3d0401': 'sha256', // ecdsa-with-SHA1
  '2a8648ce3d040301': 'sha224',
  '2a8648ce3d040302': 'sha256',
  '2a8648ce3d040303': 'sha384',
  '2a8648ce3d040304': 'sha512',
};

function serverEndPoint(socket: TLSSocket): Buffer | undefined {
  const cert = socket.getCertificate();
  const raw = cert && 'raw' in cert ? (cert.raw as Buffer | undefined) : undefined;
  if (!raw) return undefined;
  const oid = signatureAlgorithmOid(raw);
  const hash = oid && END_POINT_HASH[oid];
  // RSASSA-PSS, EdDSA, ...: RFC 5929 names no hash, so the type is not offered.
  if (!hash) return undefined;
  return createHash(hash).update(raw).digest();
}

/**
 * Certificate ::= SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE { OID, ... }, ... }
 * Returns the OID's content octets in hex, or undefined when the DER does not look like that.
 */
function signatureAlgorithmOid(der: Buffer): string | undefined {
  const outer = readHeader(der, 0, 0x30);
  if (!outer) return undefined;
  const tbs = readHeader(der, outer.contentStart, 0x30);
  if (!tbs) return undefined;
  const algorithm = readHeader(der, tbs.contentStart + tbs.length, 0x30);
  if (!algorithm) return undefined;
  const oid = readHeader(der, algorithm.contentStart, 0x06);
  if (!oid) return undefined;
  return der.subarray(oid.contentStart, oid.contentStart + oid.length).toString('hex');
}

function readHeader(der: Buffer, offset: number, tag: number): { contentStart: number; length: number } | undefined {
  if (offset + 2 > der.length || der[offset] !== tag) return undefined;
  let length = der[offset + 1];
  let contentStart = offset + 2;
  if (length & 0x80) {
    const bytes = length & 0x7f;
    if (bytes === 0 || bytes > 4 || contentStart + bytes > der.length) return undefined;
    length = 0;
    for (let i = 0; i < bytes; i++) length = length * 256 + der[contentStart + i];
    contentStart += bytes;
  }
  if (contentStart + length > der.length) return undefined;
  return { contentStart, length };
}
