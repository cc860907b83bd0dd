import { Element, parse as parseXml } from 'ltx';
import { StanzaError } from '../errors';
import { NS } from '../xml/ns';
import type { ServerModule } from './module';

/** XEP-0054 vcard-temp: anyone may read an account's vCard; only the owner may change it. */
export const vcard: ServerModule = ({ router, storage }) => {
  router.feature('host', NS.VCARD);
  router.feature('account', NS.VCARD);
  router.iq('get', 'account', NS.VCARD, 'vCard', async ({ self, to }) => {
    const xml = await storage.vcards.get(to.bareString());
    if (xml) return parseXml(xml);
    // §3.1: the owner with no vCard yet gets an empty one. §3.3: for someone else's, "If no vCard
    // exists or the user does not exist, the server MUST return a stanza error ... the same error
    // condition in both cases" (no directory harvesting); RFC 6121 §8.5.1 names it for no account.
    if (self) return new Element('vCard', { xmlns: NS.VCARD });
    throw new StanzaError('service-unavailable');
  });
  router.iq('set', 'account', NS.VCARD, 'vCard', async ({ payload, self, to }) => {
    if (!self) throw new StanzaError('forbidden');
    payload.parent = null;
    await storage.vcards.set(to.bareString(), payload.toString());
    return null;
  });
};
