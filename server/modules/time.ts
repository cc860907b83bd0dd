import { Element } from 'ltx';
import { NS } from '../xml/ns';
import type { ServerModule } from './module';

/** XEP-0202 entity time: the server's clock in UTC (XEP-0082 format). */
export const time: ServerModule = ({ router }) => {
  router.iq('get', 'host', NS.TIME, 'time', () => {
    const result = new Element('time', { xmlns: NS.TIME });
    result.c('tzo').t('Z');
    result.c('utc').t(new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'));
    return result;
  });
  router.feature('host', NS.TIME);
};
