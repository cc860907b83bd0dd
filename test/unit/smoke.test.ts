import t from 'tap';
import { StanzaError } from '../../server/errors';
t.test('stanza error defaults type', async (t) => {
  t.equal(new StanzaError('forbidden').type, 'auth');
  t.match(new StanzaError('forbidden').toElement().toString(), /<forbidden xmlns/);
});
