import { Element, parse as parseXml } from 'ltx';
import { StanzaError } from '../errors';
import { STORAGE_LIMITS } from '../storage/limits';
import { NS } from '../xml/ns';
import type { ServerModule } from './module';

/** XEP-0049 private XML storage: one element per namespace, readable and writable by its owner only. */
export const privateStorage: ServerModule = (ctx) => {
  const { router, storage } = ctx;
  router.iq('get', 'account', NS.PRIVATE, 'query', async ({ payload, self, to }) => {
    if (!self) throw new StanzaError('forbidden');
    const wanted = payload.getChildElements();
    if (wanted.length !== 1) throw new StanzaError('bad-request', 'ask for exactly one element');
    const namespace = checkNamespace(wanted[0]);
    const xml = await storage.privateXml.get(to.bareString(), namespace);
    const query = new Element('query', { xmlns: NS.PRIVATE });
    // XEP-0049 §2.2: nothing stored: the empty element that was asked for.
    query.cnode(xml ? parseXml(xml) : new Element(wanted[0].name, { xmlns: namespace }));
    return query;
  });
  router.iq('set', 'account', NS.PRIVATE, 'query', async ({ payload, self, to }) => {
    if (!self) throw new StanzaError('forbidden');
    const elements = payload.getChildElements();
    if (elements.length === 0) throw new StanzaError('not-acceptable', 'nothing to store');
    for (const element of elements) checkNamespace(element);
    for (const element of elements) {
      element.parent = null;
      await storage.privateXml.set(to.bareString(), element.attrs.xmlns, element.toString());
      // XEP-0402 §5: XEP-0048 bookmarks become PEP bookmarks too, for newer clients and other devices.
      if (element.attrs.xmlns === 'storage:bookmarks') await ctx.bookmarksFromPrivate?.(to, element);
    }
    return null;
  });
};

/** XEP-0049 §3: the element needs its own namespace, and jabber:iq:private itself is not storable. */
function checkNamespace(element: Element): string {
  const namespace = element.attrs.xmlns as string | undefined;
  if (!namespace || namespace === NS.PRIVATE || namespace === NS.CLIENT) {
    throw new StanzaError('not-acceptable', 'the element needs a namespace of its own');
  }
  // Checked before anything is stored, so a set with several elements is all or nothing.
  if ([...namespace].length > STORAGE_LIMITS.namespace) {
    throw new StanzaError('not-acceptable', `namespaces longer than ${STORAGE_LIMITS.namespace} characters are not stored`);
  }
  return namespace;
}
