import { StanzaError } from '../errors';
import { NS } from '../xml/ns';
import type { ServerModule } from './module';

/** XEP-0280 message carbons: each resource opts in; the copying happens in message delivery. */
export const carbons: ServerModule = ({ router, sessions }) => {
  router.feature('host', NS.CARBONS);
  for (const name of ['enable', 'disable'] as const) {
    router.iq('set', 'account', NS.CARBONS, name, ({ session, self }) => {
      // XEP-0280 §4.1/§5.1: not-allowed for another user's resources or a client not hosted here.
      if (!self || !session) throw new StanzaError('not-allowed');
      sessions.setCarbons(session, name === 'enable');
      return null;
    });
  }
};
