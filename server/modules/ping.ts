import { NS } from '../xml/ns';
import type { ServerModule } from './module';

/** XEP-0199 §4: the server answers a ping addressed to it (or to an account) with an empty result. */
export const ping: ServerModule = ({ router }) => {
  router.iq('get', 'host', NS.PING, 'ping', () => null);
  router.iq('get', 'account', NS.PING, 'ping', () => null);
  router.feature('host', NS.PING);
};
