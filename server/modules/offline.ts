import { NS } from '../xml/ns';
import type { ServerModule } from './module';

/**
 * XEP-0160 offline messages: storing happens in message delivery; this delivers the stored
 * messages when a resource becomes available with a non-negative priority.
 */
export const offline: ServerModule = ({ router, presence, messages }) => {
  router.feature('host', NS.OFFLINE);
  presence.onAvailable(async (session, initial, previousPriority) => {
    // XEP-0160 §2: "When the recipient next sends non-negative available presence to the server,
    // the server delivers the message": initial presence, or a move up from a negative priority.
    if (initial || previousPriority < 0) await messages.flushOffline(session);
  });
};
