import tls from 'node:tls';
import type { PeerCertificate } from '../c2s/transport';

/** Whether a peer's certificate proves `domain` (RFC 6120 §13.7.2, RFC 6125 names), or why not. */
export type DomainProof = { valid: true } | { valid: false; reason: string };

/** A trusted chain (system CAs and --s2s-ca-file) whose names cover `domain`: what SASL EXTERNAL needs. */
export function certificateProves(peer: PeerCertificate | undefined, domain: string): DomainProof {
  if (!peer) return { valid: false, reason: 'no certificate' };
  if (!peer.trusted) return { valid: false, reason: `untrusted certificate (${peer.reason ?? 'unknown issuer'})` };
  const mismatch = tls.checkServerIdentity(domain.replace(/^\[(.*)\]$/, '$1'), peer.certificate);
  return mismatch ? { valid: false, reason: `the certificate does not name ${domain}` } : { valid: true };
}
