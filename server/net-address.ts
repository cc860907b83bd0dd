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

/** An IP address as limits and trust lists compare it: IPv4-mapped IPv6 (::ffff:127.0.0.1) as its IPv4 form, lower case. */
export function normaliseAddress(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return (mapped ? mapped[1] : address).toLowerCase();
}
