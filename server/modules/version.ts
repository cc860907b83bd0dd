import { Element } from 'ltx';
import { NS } from '../xml/ns';
import type { ServerModule } from './module';
import { SERVER_NAME, SERVER_VERSION } from '../version';

/** XEP-0092: software version of the server. The OS is not disclosed (XEP-0092 §5: it MAY be omitted). */
export const version: ServerModule = ({ router }) => {
  router.iq('get', 'host', NS.VERSION, 'query', () => {
    const query = new Element('query', { xmlns: NS.VERSION });
    query.c('name').t(SERVER_NAME);
    query.c('version').t(SERVER_VERSION);
    return query;
  });
  router.feature('host', NS.VERSION);
};
