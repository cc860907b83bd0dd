import { NS } from '../xml/ns';
import type { ServerModule } from './module';

/**
 * XEP-0160 offline messages: storing happens in message delivery; this delivers the stored
 * messages when a resource sends initial presence with a non-negative priority.
 */
export const offline: ServerModule = ({ router, presence, messages }) => {
  router.feature('host', NS.OFFLINE);
  presence.onAvailable(async (session, initial) => {
    if (initial) await messages.flushOffline(session);
  });
};
