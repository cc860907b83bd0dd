import { Element, parse as parseXml } from 'ltx';
import { StanzaError } from '../errors';
import { NS } from '../xml/ns';
import type { ServerModule } from './module';

/** XEP-0054 vcard-temp: anyone may read an account's vCard; only the owner may change it. */
export const vcard: ServerModule = ({ router, storage }) => {
  router.feature('host', NS.VCARD);
  router.feature('account', NS.VCARD);
  router.iq('get', 'account', NS.VCARD, 'vCard', async ({ to }) => {
    const xml = await storage.vcards.get(to.bareString());
    // XEP-0054 §3.1: no vCard yet is an empty vCard.
    return xml ? parseXml(xml) : new Element('vCard', { xmlns: NS.VCARD });
  });
  router.iq('set', 'account', NS.VCARD, 'vCard', async ({ payload, self, to }) => {
    if (!self) throw new StanzaError('forbidden');
    payload.parent = null;
    await storage.vcards.set(to.bareString(), payload.toString());
    return null;
  });
};
