import { NS } from '../xml/ns';
import type { ServerModule } from './module';

/** XEP-0280 message carbons: each resource opts in; the copying happens in message delivery. */
export const carbons: ServerModule = ({ router }) => {
  router.feature('host', NS.CARBONS);
  for (const name of ['enable', 'disable'] as const) {
    router.iq('set', 'account', NS.CARBONS, name, ({ session, self }) => {
      if (self && session) session.carbons = name === 'enable';
      return null;
    });
  }
};
