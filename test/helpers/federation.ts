import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { deriveScramCredentials } from '../../server/c2s/sasl/scram';
import { loadConfig } from '../../server/config/config';
import { createLogger, silentLogger } from '../../server/log';
import { startNode, type XmppNode } from '../../server/main';
import { connectClient, type XmppClient } from './client';
import { PASSWORD, freePort } from './server';

type Test = { teardown(fn: () => unknown): void };

/** One of our servers for a domain of its own, federating on a loopback port. */
export interface DomainServer {
  domain: string;
  node: XmppNode;
  c2sPort: number;
  s2sPort: number;
  addUser(local: string): Promise<string>;
  login(local: string, resource?: string): Promise<XmppClient>;
}

/**
 * Servers of ours, one per domain, in this process, each with static routes to the others (no
 * DNS) and self-signed certificates (so dialback proves the domains). `args` go to every one.
 */
export async function startDomains(
  t: Test,
  domains: string[],
  args: string[] = [],
  routes: Record<string, number> = {},
  at: {
    /** Listen on this loopback address and s2s port (a peer that finds servers by their address, e.g. 5269 on 127.0.0.2). */
    address?: string;
    s2sPort?: number;
    /** Static routes to the other domains [true]; false: they are found through DNS (--dns-servers in `args`). */
    staticRoutes?: boolean;
    /** Arguments for one domain's server only (its certificate, its direct-TLS port). */
    argsFor?: (domain: string) => string[];
  } = {},
): Promise<DomainServer[]> {
  const s2sPorts = await Promise.all(domains.map(async () => at.s2sPort ?? (await freePort())));
  const address = at.address ?? '127.0.0.1';
  const allRoutes = { ...Object.fromEntries(domains.map((d, i) => [d, s2sPorts[i]])), ...routes };
  const servers: DomainServer[] = [];
  for (const [i, domain] of domains.entries()) {
    const dir = mkdtempSync(path.join(os.tmpdir(), `xmpp-s2s-${domain}-`));
    const c2sPort = await freePort();
    const config = loadConfig([
      `--virt-hosts=${domain}`,
      `--c2s-ports=${c2sPort}`,
      '--c2s-ssl-ports=0',
      '--ws-ports=0',
      '--bosh-ports=0',
      '--http-port=0',
      `--s2s-ports=${s2sPorts[i]}`,
      '--s2s-ssl-ports=0',
      // The other domains and their component subdomains (muc., pubsub.), as their SRV records would.
      ...(at.staticRoutes === false ? [] : [`--s2s-static-routes=${Object.entries(allRoutes).filter(([d]) => d !== domain).flatMap(([d, port]) => ['', 'muc.', 'pubsub.'].map((sub) => `${sub}${d}=127.0.0.1:${port}`)).join(', ')}`]),
      `--bind-address=${address}`,
      `--user-db-uri=sqlite:${path.join(dir, 'xmpp.sqlite')}`,
      `--data-dir=${dir}`,
      '--scram-iterations=4096',
      ...args,
      ...(at.argsFor?.(domain) ?? []),
    ]);
    // XMPP_TEST_DEBUG=s2s,router,... shows those parts' debug lines while a test runs.
    const debug = process.env.XMPP_TEST_DEBUG;
    const node = await startNode(config, debug ? createLogger({ ...config, logLevel: 'info', debug: debug.split(',') }) : silentLogger());
    const clients: XmppClient[] = [];
    t.teardown(async () => {
      await Promise.all(clients.map((c) => c.stop().catch(() => undefined)));
      await node.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    servers.push({
      domain,
      node,
      c2sPort,
      s2sPort: s2sPorts[i],
      async addUser(local) {
        const jid = `${local}@${domain}`;
        await node.storage.users.create(jid, deriveScramCredentials(PASSWORD, 4096));
        return jid;
      },
      async login(local, resource) {
        const client = await connectClient({ service: `xmpp://${address}:${c2sPort}`, domain, local, password: PASSWORD, resource });
        clients.push(client);
        return client;
      },
    });
  }
  return servers;
}
