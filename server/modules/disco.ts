import { Element } from 'ltx';
import { StanzaError } from '../errors';
import type { IqRequest, IqTarget } from '../router';
import { NS } from '../xml/ns';
import type { ModuleContext, ServerModule } from './module';

/**
 * XEP-0030 service discovery for the server and, on their behalf, for accounts. Features come
 * from what the other modules registered on the router.
 */
export const disco: ServerModule = (ctx) => {
  const { router } = ctx;
  router.identity('host', { category: 'server', type: 'im', name: 'XMPP server' });
  router.identity('account', { category: 'account', type: 'registered' });
  router.feature('host', NS.DISCO_INFO);
  router.feature('host', NS.DISCO_ITEMS);
  router.feature('account', NS.DISCO_INFO);
  router.feature('account', NS.DISCO_ITEMS);

  router.iq('get', 'host', NS.DISCO_INFO, 'query', (req) => {
    const node = req.payload.attrs.node as string | undefined;
    if (node === undefined) return info(ctx, 'host', req);
    const handler = router.discoNodeOf(node)?.info;
    if (!handler) throw new StanzaError('item-not-found');
    return handler(req);
  });
  router.iq('get', 'account', NS.DISCO_INFO, 'query', async (req) => {
    await mayDiscoverAccount(ctx, req);
    return info(ctx, 'account', req);
  });
  router.iq('get', 'host', NS.DISCO_ITEMS, 'query', (req) => {
    const node = req.payload.attrs.node as string | undefined;
    if (node !== undefined) {
      const handler = router.discoNodeOf(node)?.items;
      if (!handler) throw new StanzaError('item-not-found');
      return handler(req);
    }
    const query = new Element('query', { xmlns: NS.DISCO_ITEMS });
    // Components served at subdomains of this host (XEP-0030 §4.2).
    for (const domain of router.componentDomains()) {
      if (domain.endsWith(`.${req.to.domain}`)) query.c('item', { jid: domain });
    }
    return query;
  });
  router.iq('get', 'account', NS.DISCO_ITEMS, 'query', async (req) => {
    await mayDiscoverAccount(ctx, req);
    if (req.payload.attrs.node) throw new StanzaError('item-not-found');
    return new Element('query', { xmlns: NS.DISCO_ITEMS });
  });
};

function info({ router }: ModuleContext, target: IqTarget, req: IqRequest): Element {
  if (req.payload.attrs.node) throw new StanzaError('item-not-found');
  const query = new Element('query', { xmlns: NS.DISCO_INFO });
  for (const identity of router.discoIdentities(target)) {
    const attrs: Record<string, string> = { category: identity.category, type: identity.type };
    if (identity.name) attrs.name = identity.name;
    query.c('identity', attrs);
  }
  for (const feature of router.discoFeatures(target)) query.c('feature', { var: feature });
  return query;
}

/** XEP-0030 §3.1: an account is discoverable by itself and by contacts with a presence subscription. */
async function mayDiscoverAccount({ storage }: ModuleContext, req: IqRequest): Promise<void> {
  if (req.self) return;
  const account = req.to.bareString();
  const item = await storage.roster.getItem(account, req.from.bareString());
  if (!item || (item.subscription !== 'from' && item.subscription !== 'both')) {
    throw new StanzaError('service-unavailable');
  }
}
