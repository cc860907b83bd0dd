import { Element } from 'ltx';
import { NS } from '../../server/xml/ns';
import { PUBSUB_SERVICE_FEATURES } from './features';
import { metaDataForm } from './node-config';
import type { PubSubService, RequestScope } from './service';

/**
 * XEP-0060 §5: disco#info of the service (pubsub/service and its features) or of a node
 * (pubsub/leaf with the meta-data form, §5.4).
 */
export async function discoInfo(service: PubSubService, scope: RequestScope, query: Element): Promise<Element> {
  const node = query.attrs.node as string | undefined;
  const reply = new Element('query', node ? { xmlns: NS.DISCO_INFO, node } : { xmlns: NS.DISCO_INFO });
  if (!node) {
    reply.c('identity', { category: 'pubsub', type: 'service', name: 'Publish-Subscribe' });
    for (const feature of [NS.DISCO_INFO, NS.DISCO_ITEMS, ...PUBSUB_SERVICE_FEATURES]) reply.c('feature', { var: feature });
    return reply;
  }
  const meta = await service.nodeMetaData(scope.service, node);
  reply.c('identity', { category: 'pubsub', type: 'leaf' });
  reply.c('feature', { var: NS.PUBSUB });
  reply.cnode(metaDataForm(meta.config, meta.owners, meta.publishers, meta.createdAt));
  return reply;
}

/** XEP-0060 §5.2 the service's nodes; §5.5 a node's items (for those who may retrieve them). */
export async function discoItems(service: PubSubService, scope: RequestScope, query: Element): Promise<Element> {
  const node = query.attrs.node as string | undefined;
  const reply = new Element('query', node ? { xmlns: NS.DISCO_ITEMS, node } : { xmlns: NS.DISCO_ITEMS });
  if (!node) {
    for (const record of await service.listNodes(scope.service)) {
      const title = String(record.config.title ?? '');
      reply.c('item', title ? { jid: scope.service, node: record.node, name: title } : { jid: scope.service, node: record.node });
    }
    return reply;
  }
  for (const id of await service.itemIds(scope, node)) reply.c('item', { jid: scope.service, name: id });
  return reply;
}

/** Disco requests this component answers; anything else is service-unavailable. */
export function isDisco(payload: Element): boolean {
  return payload.name === 'query' && (payload.attrs.xmlns === NS.DISCO_INFO || payload.attrs.xmlns === NS.DISCO_ITEMS);
}
