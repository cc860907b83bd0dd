import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net from 'node:net';
import { tryParseJID } from '../jid';
import type { Logger } from '../log';
import type { SessionAdmin } from '../sm/session-admin';
import type { Storage } from '../storage/types';

/** What the control socket can do to its node. */
export interface ControlHandlers {
  node: string;
  hosts: readonly string[];
  admin: SessionAdmin;
  storage: Pick<Storage, 'users'>;
  /** Reads the configuration again and applies it, as SIGHUP does; what changed, or why not. */
  reload(): Promise<{ ok: boolean; message: string }>;
  /** Marks the node draining (readiness 503); it keeps serving. */
  drain(): void;
}

/** How long connecting to an existing socket file may take before it counts as stale [1000 ms]. */
const PROBE_TIMEOUT_MS = 1000;

/**
 * xmppctl's way into the running node: HTTP with JSON on a Unix socket in the data folder, which
 * only the server's own user (and root) may connect to (mode 0600). It answers:
 * GET /sessions?user=JID|domain=D, POST /kick?jid=JID (repeatable), GET /stats, POST /reload and
 * POST /drain. Sessions, kicks and stats cover every node of the cluster.
 */
export async function startControlSocket(path: string, handlers: ControlHandlers, logger: Logger): Promise<{ close(): Promise<void> }> {
  if (existsSync(path)) {
    if (await answers(path)) throw new Error(`another node already listens on the control socket ${path} (--control-socket, --data-dir)`);
    // Left by a node that was killed: nobody listens on it.
    unlinkSync(path);
  }
  const server = http.createServer((req, res) => {
    route(req, handlers).then(
      ({ status, body }) => reply(res, status, body),
      (err) => {
        logger.error('control socket request failed', { url: req.url, err: String((err as Error)?.stack ?? err) });
        reply(res, 500, { error: String((err as Error)?.message ?? err) });
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(path, 0o600);
  logger.info('control socket listening', { path });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function route(req: IncomingMessage, h: ControlHandlers): Promise<{ status: number; body: unknown }> {
  const url = new URL(req.url ?? '/', 'http://control');
  const key = `${req.method} ${url.pathname}`;
  switch (key) {
    case 'GET /sessions': {
      const user = url.searchParams.get('user') ?? undefined;
      const domain = url.searchParams.get('domain') ?? undefined;
      const { result, unanswered } = await h.admin.list({ user, domain });
      return { status: 200, body: { sessions: result, unanswered } };
    }
    case 'POST /kick': {
      const jids = url.searchParams.getAll('jid');
      if (jids.length === 0) return { status: 400, body: { error: 'name at least one jid' } };
      const { result, unanswered } = await h.admin.end(jids, url.searchParams.get('reason') ?? 'the session was ended by an administrator');
      return { status: 200, body: { ended: result, unanswered } };
    }
    case 'GET /stats': {
      const { result: sessions, unanswered } = await h.admin.list({});
      const domains: Record<string, { registered: number; disabled: number; onlineUsers: number; sessions: number }> = {};
      for (const domain of h.hosts) {
        const mine = sessions.flatMap((s) => {
          const jid = tryParseJID(s.jid);
          return jid?.domain === domain ? [jid] : [];
        });
        const users = new Set(mine.map((jid) => jid.bareString()));
        domains[domain] = { ...(await h.storage.users.count(domain)), onlineUsers: users.size, sessions: mine.length };
      }
      const nodes: Record<string, number> = {};
      for (const s of sessions) nodes[s.node] = (nodes[s.node] ?? 0) + 1;
      return { status: 200, body: { node: h.node, domains, sessionsPerNode: nodes, unanswered } };
    }
    case 'POST /reload': {
      const { ok, message } = await h.reload();
      return { status: ok ? 200 : 422, body: ok ? { changed: message } : { error: message } };
    }
    case 'POST /drain':
      h.drain();
      return { status: 200, body: { draining: true } };
    default:
      return { status: 404, body: { error: `no such control request: ${key}` } };
  }
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** True when something accepts connections on the socket at `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(path);
    const done = (result: boolean) => {
      socket.destroy();
      resolve(result);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.setTimeout(PROBE_TIMEOUT_MS, () => done(false));
  });
}
