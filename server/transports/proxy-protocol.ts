import type net from 'node:net';
import { ProxyProtocolIdentifier, ProxyProtocolVersion, V1ProxyProtocol, V2ProxyProtocol } from 'proxy-protocol-js';

/** The longest v1 header is 107 bytes with its CRLF; a v2 header is 16 bytes plus its length [HAProxy's spec]. */
const V1_MAX = 107;
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** Beyond this a v2 header is not one we take (addresses and a few TLVs are far smaller) [1024 bytes]. */
const V2_MAX = 1024;

/** What a balancer said of the connection it forwards. */
export interface ProxiedPeer {
  /** The client's "address:port"; undefined for the balancer's own connections (v2 LOCAL, v1 UNKNOWN). */
  remoteAddress?: string;
}

/**
 * Reads the PROXY protocol header (v1 text or v2 binary, HAProxy's proxy-protocol.txt) that a
 * trusted balancer sends before the client's first byte, and puts back whatever followed it. Rejects
 * when the connection sends something else, closes, or sends nothing within `timeoutMs`.
 */
export function readProxyHeader(socket: net.Socket, timeoutMs: number): Promise<ProxiedPeer> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const finish = (err: Error | undefined, peer?: ProxiedPeer, rest?: Buffer) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onClose);
      if (err) return reject(err);
      socket.pause();
      if (rest && rest.length > 0) socket.unshift(rest);
      resolve(peer!);
    };
    const onClose = () => finish(new Error('closed before the PROXY header'));
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      try {
        const parsed = parse(buffered);
        if (parsed) finish(undefined, parsed.peer, buffered.subarray(parsed.length));
      } catch (err) {
        finish(err as Error);
      }
    };
    const timer = setTimeout(() => finish(new Error(`no PROXY header within ${timeoutMs} ms`)), timeoutMs);
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('error', onClose);
  });
}

/** The header at the start of `data` and its length; undefined while it is incomplete. */
function parse(data: Buffer): { peer: ProxiedPeer; length: number } | undefined {
  if (data.length >= 1 && data[0] === 0x50) {
    const end = data.indexOf('\r\n');
    if (end < 0) {
      if (data.length >= V1_MAX) throw new Error('a PROXY v1 header longer than 107 bytes');
      return undefined;
    }
    const text = data.subarray(0, end + 2).toString('latin1');
    if (ProxyProtocolIdentifier.identify(text) !== ProxyProtocolVersion.V1) throw new Error('not a PROXY protocol header');
    if (text.startsWith('PROXY UNKNOWN')) return { peer: {}, length: end + 2 };
    const v1 = V1ProxyProtocol.parse(text);
    return { peer: { remoteAddress: `${v1.source.ipAddress}:${v1.source.port}` }, length: end + 2 };
  }
  const prefix = data.subarray(0, Math.min(data.length, V2_SIGNATURE.length));
  if (!V2_SIGNATURE.subarray(0, prefix.length).equals(prefix)) throw new Error('not a PROXY protocol header');
  if (data.length < 16) return undefined;
  const length = 16 + data.readUInt16BE(14);
  if (length > V2_MAX) throw new Error(`a PROXY v2 header of ${length} bytes`);
  if (data.length < length) return undefined;
  const command = data[12] & 0x0f;
  // LOCAL: the balancer's own connection (a health check); PROXY: a client's.
  if (command === 0) return { peer: {}, length };
  const v2 = V2ProxyProtocol.parse(Uint8Array.prototype.slice.call(data, 0, length));
  const address = v2.proxyAddress as { sourceAddress?: { address: number[] | string }; sourcePort?: number } | undefined;
  if (!address?.sourceAddress || address.sourcePort === undefined) return { peer: {}, length };
  return { peer: { remoteAddress: `${formatAddress(address.sourceAddress.address)}:${address.sourcePort}` }, length };
}

/** IPv4 as a dotted quad, IPv6 in its shortest form (as Node writes socket addresses). */
function formatAddress(address: number[] | string): string {
  if (typeof address === 'string') return address;
  if (address.length === 4) return address.join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((address[i] << 8) | address[i + 1]).toString(16));
  // The WHATWG URL parser writes IPv6 hosts compressed (RFC 5952).
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}
