import net from 'node:net';
import { freePort } from './server';

export interface LinkProxy {
  readonly port: number;
  /** While false the bytes vanish both ways (a partition): each end must notice by itself. */
  forwarding: boolean;
  close(): void;
}

/** A TCP proxy for one cluster link that a test can stop forwarding (a partition) and resume. */
export async function linkProxy(targetPort: number): Promise<LinkProxy> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    const outbound = net.connect(targetPort, '127.0.0.1');
    for (const socket of [inbound, outbound]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        inbound.destroy();
        outbound.destroy();
      });
    }
    inbound.on('data', (data) => proxy.forwarding && outbound.write(data));
    outbound.on('data', (data) => proxy.forwarding && inbound.write(data));
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const proxy: LinkProxy = {
    port,
    forwarding: true,
    close() {
      server.close();
      for (const socket of sockets) socket.destroy();
    },
  };
  return proxy;
}
