import type { FederationStatus } from '../s2s/federation';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../log';
import type { NodeMetrics } from '../metrics';
import type { Storage } from '../storage/types';
import { SERVER_VERSION } from '../version';
import { statusPage, type StatusData } from './status-page';
import type { HttpHandler } from './http-listener';

export interface EndpointsOptions {
  /** This node's name (--cluster-hostname). */
  node: string;
  /** --min-cluster-nodes: readiness waits for this many nodes while the cluster forms (never after). */
  minClusterNodes: number;
  metrics: NodeMetrics;
  storage: Pick<Storage, 'ping' | 'kind'>;
  /** Bound sessions on this node. */
  sessions: () => number;
  /**
   * Cluster nodes connected, this one included. A single node counts 1; the cluster code
   * provides the live figure when clustering is on.
   */
  clusterNodes: () => number;
  /** Links, queues, strategy cache and forwarding figures, when clustered. */
  clusterStatus?: () => Record<string, unknown>;
  federationStatus?: () => FederationStatus;
  /** False once the node has begun to stop. */
  serving: () => boolean;
  /** True while the node drains before it stops (SIGTERM and --drain-grace). */
  draining?: () => boolean;
  logger: Logger;
}

/**
 * The operators' endpoints on --http-port: GET /health/live (liveness: the process answers),
 * GET /health/ready and its older name /health (readiness, for load balancers: 200 or 503 with a
 * small JSON body), GET /status (JSON for scripts; an HTML page for browsers, or with
 * ?format=html) and GET /metrics (Prometheus).
 */
export class Endpoints implements HttpHandler {
  private readonly startedAt = new Date();
  /** The cluster has had its minimum size once: from then on a lost peer never makes this node unready. */
  private formed = false;

  constructor(private readonly opts: EndpointsOptions) {}

  request(req: IncomingMessage, res: ServerResponse): boolean {
    const path = (req.url ?? '/').split('?')[0];
    let produce: (() => Promise<{ status: number; type: string; body: string }>) | undefined;
    switch (path) {
      case '/health':
      case '/health/ready': produce = () => this.health(); break;
      case '/health/live': produce = async () => json(200, { status: 'ok', node: this.opts.node }); break;
      case '/status': produce = () => (wantsHtml(req) ? this.statusPage() : this.status()); break;
      case '/metrics': produce = () => this.metrics(); break;
      default: return false;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Length': '0' }).end();
      return true;
    }
    produce().then(
      ({ status, type, body }) => {
        res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (err) => {
        this.opts.logger.error('HTTP endpoint failed', { path, err: String((err as Error)?.stack ?? err) });
        if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end('internal server error\n');
      },
    );
    return true;
  }

  /**
   * Readiness (DESIGN "health as a contract"): 200 while the node serves clients: it is not
   * stopping and its database answers (logins need it). --min-cluster-nodes holds a forming
   * cluster back until that many nodes are connected; once it was reached, losing nodes never
   * takes the survivors out of service.
   */
  private async health(): Promise<{ status: number; type: string; body: string }> {
    const { node, minClusterNodes } = this.opts;
    const { ok, problems, clusterNodes } = await this.readiness();
    const body = ok
      ? { status: 'ok', node, clusterNodes }
      : { status: 'unavailable', node, clusterNodes, minClusterNodes, problems };
    return json(ok ? 200 : 503, body);
  }

  private async readiness(): Promise<{ ok: boolean; problems: string[]; clusterNodes: number }> {
    const { minClusterNodes } = this.opts;
    const clusterNodes = this.opts.clusterNodes();
    if (clusterNodes >= minClusterNodes) this.formed = true;
    const database = await this.opts.storage.ping();
    const problems: string[] = [];
    if (!this.opts.serving()) problems.push('the node is stopping');
    else if (this.opts.draining?.()) problems.push('the node is draining: it stops soon, new clients should go elsewhere');
    if (!database) problems.push('the database does not answer');
    if (!this.formed) problems.push(`the cluster is forming: ${clusterNodes} of ${minClusterNodes} nodes connected`);
    return { ok: problems.length === 0, problems, clusterNodes };
  }

  private async statusPage(): Promise<{ status: number; type: string; body: string }> {
    const [data, ready] = await Promise.all([this.statusData(), this.readiness()]);
    return { status: 200, type: 'text/html; charset=utf-8', body: statusPage(data, ready) };
  }

  private async status(): Promise<{ status: number; type: string; body: string }> {
    return json(200, await this.statusData());
  }

  /** What /status shows, as JSON or as the page. */
  private async statusData(): Promise<StatusData> {
    const { metrics, storage } = this.opts;
    const memory = process.memoryUsage();
    return {
      node: this.opts.node,
      version: SERVER_VERSION,
      startedAt: this.startedAt.toISOString(),
      uptimeSeconds: Math.round((Date.now() - this.startedAt.getTime()) / 1000),
      serving: this.opts.serving(),
      sessions: this.opts.sessions(),
      connections: Object.fromEntries(metrics.connections()),
      stanzas: metrics.stanzaTotals(),
      memory: { rss: memory.rss, heapUsed: memory.heapUsed, heapTotal: memory.heapTotal, external: memory.external },
      database: { kind: storage.kind, reachable: await storage.ping() },
      cluster: { nodes: this.opts.clusterNodes(), minNodes: this.opts.minClusterNodes, ...this.opts.clusterStatus?.() },
      ...(this.opts.federationStatus ? { federation: this.opts.federationStatus() } : {}),
    };
  }

  private async metrics(): Promise<{ status: number; type: string; body: string }> {
    return { status: 200, type: this.opts.metrics.contentType, body: await this.opts.metrics.text() };
  }
}

/** A browser asks for HTML; scripts (curl, fetch) get JSON; ?format= decides when given. */
function wantsHtml(req: IncomingMessage): boolean {
  const format = new URL(req.url ?? '/', 'http://node').searchParams.get('format');
  if (format) return format === 'html';
  return /\btext\/html\b/.test(String(req.headers.accept ?? ''));
}

function json(status: number, value: unknown): { status: number; type: string; body: string } {
  return { status, type: 'application/json; charset=utf-8', body: JSON.stringify(value) + '\n' };
}
