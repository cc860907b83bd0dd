import { isIP } from 'node:net';

/**
 * The IP address of a transport's remote address, "address:port" (IPv6 too: the port follows the
 * last colon) or a bare address (a client named by a trusted proxy's X-Forwarded-For).
 */
export function hostOf(address: string): string {
  if (isIP(address) !== 0) return address;
  const colon = address.lastIndexOf(':');
  return colon < 0 ? address : address.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
}
