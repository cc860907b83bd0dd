import type { FederationStatus } from '../s2s/federation';
import type { Transport, TransportListener } from '../c2s/transport';
import type { Config } from '../config/types';
import { StreamError } from '../errors';
import type { Logger } from '../log';
import type { NodeMetrics } from '../metrics';
import type { Storage } from '../storage/types';
import { BoshEndpoint, BoshSessions } from '../transports/bosh';
import { WebSocketEndpoint } from '../transports/websocket';
import type { AddressLimits } from '../transports/address-limits';
import { Endpoints } from './endpoints';
import { HostMeta } from './host-meta';
import { HttpListener, type HttpHandler } from './http-listener';
import { RequestInfoReader } from './request-info';
import type { TlsCredentials } from '../tls';

export interface WebListenersOptions {
  config: Config;
  /** PEM certificate and key (and session ticket keys), for https/wss on the same ports. */
  certificate: TlsCredentials;
  logger: Logger;
  storage: Storage;
  metrics: NodeMetrics;
  /** Served domains. */
  hosts: ReadonlySet<string>;
  /** Bound sessions on this node. */
  sessions: () => number;
  /** Cluster nodes connected, this one included (see Endpoints). */
  clusterNodes: () => number;
  /** The cluster's figures for /status, when clustered. */
  clusterStatus?: () => Record<string, unknown>;
  /** Server-to-server streams, when federation is on. */
  federationStatus?: () => FederationStatus;
  /** Builds the stream state machine for a new WebSocket connection or BOSH session. */
  onTransport: (transport: Transport) => TransportListener;
  /** Components' handlers (XEP-0363 uploads), on every web port. */
  handlers?: HttpHandler[];
  /** True while the node drains before stopping (SIGTERM): readiness answers 503. */
  draining?: () => boolean;
  /** Per-address connection limits, shared with the TCP listeners. */
  addressLimits?: AddressLimits;
}

export interface WebListeners {
  /** Ports listened on: WebSocket, BOSH, and the HTTP endpoints (undefined when disabled). */
  readonly ports: { ws: number[]; bosh: number[]; http: number | undefined };
  /** The BOSH sessions of this node (the cluster link forwards requests to handle()). */
  readonly bosh: BoshSessions;
  /** New https/wss connections get this certificate (SIGHUP). */
  reloadCertificate(certificate: TlsCredentials): void;
  /** Ends WebSocket connections and BOSH sessions with system-shutdown and closes the ports. */
  close(): Promise<void>;
}

/**
 * Starts the HTTP-based listeners: WebSocket on --ws-ports, BOSH on --bosh-ports, /health
 * /status /metrics on --http-port, and XEP-0156 host-meta on all of them. Ports that appear
 * in several keys share one listener serving everything configured for it.
 */
export async function startWebListeners(opts: WebListenersOptions): Promise<WebListeners> {
  const { config, logger, metrics } = opts;
  const log = logger.category('http');
  let serving = true;

  const websocket = new WebSocketEndpoint({
    limits: config.limits,
    defaultDomain: config.virtHosts[0],
    logger: logger.category('c2s'),
    onTransport: opts.onTransport,
    bytesPerSecond: () => config.limits.clientRateLimit,
    sendQueueBytes: () => config.limits.clientSendQueue,
    addressLimits: opts.addressLimits,
  });
  const bosh = new BoshSessions({
    node: config.clusterHostname,
    hosts: opts.hosts,
    inactivity: config.boshInactivity,
    sendQueueBytes: () => config.limits.clientSendQueue,
    logger: logger.category('c2s'),
    onTransport: opts.onTransport,
    addressLimits: opts.addressLimits,
  });
  metrics.trackConnections('websocket', () => websocket.count);
  metrics.trackConnections('bosh', () => bosh.count);
  const boshEndpoint = new BoshEndpoint({ sessions: bosh, limits: config.limits, logger: log });
  const endpoints = new Endpoints({
    node: config.clusterHostname,
    minClusterNodes: config.minClusterNodes,
    metrics,
    storage: opts.storage,
    sessions: opts.sessions,
    clusterNodes: opts.clusterNodes,
    clusterStatus: opts.clusterStatus,
    federationStatus: opts.federationStatus,
    serving: () => serving,
    draining: opts.draining,
    logger: log,
  });
  const hostMeta = new HostMeta({ wsPort: config.wsPorts[0], boshPort: config.boshPorts[0] });

  const byPort = new Map<number, Set<HttpHandler>>();
  const add = (port: number, handler: HttpHandler) => {
    const handlers = byPort.get(port) ?? new Set<HttpHandler>();
    handlers.add(handler);
    byPort.set(port, handlers);
  };
  if (config.httpPort !== 0) add(config.httpPort, endpoints);
  for (const port of config.boshPorts) add(port, boshEndpoint);
  for (const port of config.wsPorts) add(port, websocket);
  for (const port of byPort.keys()) add(port, hostMeta);
  for (const handler of opts.handlers ?? []) for (const port of byPort.keys()) add(port, handler);

  const requestInfo = new RequestInfoReader(config.trustedProxies);
  const listeners: HttpListener[] = [];
  try {
    for (const [port, handlers] of byPort) {
      listeners.push(await HttpListener.listen({ port, host: config.bindAddress, certificate: opts.certificate, handlers: [...handlers], requestInfo, logger: log }));
    }
  } catch (err) {
    await Promise.all(listeners.map((l) => l.close()));
    websocket.close();
    throw err;
  }

  return {
    ports: { ws: [...config.wsPorts], bosh: [...config.boshPorts], http: config.httpPort === 0 ? undefined : config.httpPort },
    bosh,
    reloadCertificate(certificate: TlsCredentials) {
      for (const listener of listeners) listener.reloadCertificate(certificate);
    },
    async close() {
      serving = false;
      const shutdown = new StreamError('system-shutdown');
      websocket.close(shutdown);
      bosh.closeAll(shutdown);
      await Promise.all(listeners.map((l) => l.close()));
    },
  };
}
