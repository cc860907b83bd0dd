import { Element, parse as parseXml } from 'ltx';
import { StanzaError } from '../errors';
import { tryParseJID, type JID } from '../jid';
import type { Logger } from '../log';
import type { Router } from '../router';
import type { PushRegistration, Storage } from '../storage/types';
import { NS } from '../xml/ns';
import type { ServerModule } from './module';

/**
 * XEP-0357 push notifications, the client's side: <enable jid node/> (with publish-options) and
 * <disable jid [node]/> on the account. Registrations live in the database, so whichever node
 * stores or holds a message for the account can notify.
 */
export const push: ServerModule = ({ router, storage, pushNotifier }) => {
  router.feature('account', NS.PUSH);
  router.iq('set', 'account', NS.PUSH, 'enable', async ({ payload, self, to }) => {
    if (!self) throw new StanzaError('forbidden', 'only the account itself enables push notifications');
    const service = tryParseJID(String(payload.attrs.jid ?? ''));
    const node = String(payload.attrs.node ?? '');
    if (!service || node === '') throw new StanzaError('bad-request', 'enable needs the app server\'s jid and a node');
    const options = payload.getChildren('x', NS.DATA_FORMS).find((x) => x.attrs.type === 'submit');
    await storage.push.enable({ user: to.bareString(), service: service.toString(), node, options: options?.toString() });
    pushNotifier?.forget(to.bareString());
    return null;
  });
  router.iq('set', 'account', NS.PUSH, 'disable', async ({ payload, self, to }) => {
    if (!self) throw new StanzaError('forbidden', 'only the account itself disables push notifications');
    const service = tryParseJID(String(payload.attrs.jid ?? ''));
    if (!service) throw new StanzaError('bad-request', 'disable needs the app server\'s jid');
    await storage.push.disable(to.bareString(), service.toString(), payload.attrs.node ? String(payload.attrs.node) : undefined);
    pushNotifier?.forget(to.bareString());
    return null;
  });
};

/** How long a user's registrations are taken as read [5 s], and for how many users at most [10,000]. */
const PUSH_CACHE_MS = 5000;
const PUSH_CACHE_USERS = 10_000;

/**
 * XEP-0357 §7, the server's side: tells the user's app servers that a message is waiting, with
 * the summary form (message count and sender; not the body, which stays on the server).
 */
export class PushNotifier {
  readonly counters = { sent: 0, failed: 0 };
  private nextId = 0;
  /**
   * Registrations read lately, per user: a message stored offline costs no query for the many
   * users without push. A change made on another node applies here within PUSH_CACHE_MS.
   */
  private readonly cache = new Map<string, { at: number; registrations: PushRegistration[] }>();

  constructor(private readonly router: Router, private readonly storage: Storage, private readonly logger: Logger) {}

  /** The user's registrations changed on this node. */
  forget(user: string): void {
    this.cache.delete(user);
  }

  /** A message for `user` (bare JID) waits (offline, or for a session to resume); `pending` of them in all. */
  notify(user: JID, message: Element, pending: number | (() => Promise<number>)): void {
    void this.send(user, message, pending).catch((err) => {
      this.counters.failed++;
      this.logger.warn('push notification not sent', { user: user.toString(), err: String(err) });
    });
  }

  private async registrations(user: string): Promise<PushRegistration[]> {
    const hit = this.cache.get(user);
    if (hit && Date.now() - hit.at < PUSH_CACHE_MS) return hit.registrations;
    const registrations = await this.storage.push.list(user);
    if (this.cache.size >= PUSH_CACHE_USERS) this.cache.clear();
    this.cache.set(user, { at: Date.now(), registrations });
    return registrations;
  }

  private async send(user: JID, message: Element, pendingOrCount: number | (() => Promise<number>)): Promise<void> {
    const registrations = await this.registrations(user.toString());
    if (registrations.length === 0) return;
    const pending = typeof pendingOrCount === 'number' ? pendingOrCount : await pendingOrCount().catch(() => 1);
    for (const registration of registrations) {
      const service = tryParseJID(registration.service);
      if (!service) continue;
      const iq = new Element('iq', { type: 'set', id: `push-${++this.nextId}`, from: user.toString(), to: service.toString() });
      const pubsub = iq.c('pubsub', { xmlns: NS.PUBSUB });
      const form = pubsub.c('publish', { node: registration.node }).c('item').c('notification', { xmlns: NS.PUSH }).c('x', { xmlns: NS.DATA_FORMS, type: 'submit' });
      form.c('field', { var: 'FORM_TYPE' }).c('value').t('urn:xmpp:push:summary');
      form.c('field', { var: 'message-count' }).c('value').t(String(pending));
      if (message.attrs.from) form.c('field', { var: 'last-message-sender' }).c('value').t(String(message.attrs.from));
      if (registration.options) {
        try {
          pubsub.c('publish-options').cnode(parseXml(registration.options));
        } catch {
          this.logger.warn('stored push publish-options unreadable; sent without them', { user: user.toString() });
        }
      }
      this.counters.sent++;
      await this.router.route(iq, user, service);
    }
  }
}
