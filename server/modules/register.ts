import { Element } from 'ltx';
import { deriveScramCredentialsAsync } from '../c2s/sasl/scram';
import type { PreAuthIqHandler } from '../c2s/stream';
import { StanzaError } from '../errors';
import { makeJID } from '../jid';
import { UserExistsError } from '../storage/types';
import { NS } from '../xml/ns';
import type { ModuleContext, ServerModule } from './module';

/** Shortest password in-band registration accepts [8]. */
const MIN_PASSWORD_LENGTH = 8;

/**
 * XEP-0077 in-band registration (off unless --registration=true): account creation before
 * authentication, and password change or account removal after it.
 */
export const register: ServerModule = (ctx) => {
  const { router, storage, sessions, config } = ctx;
  router.feature('host', NS.REGISTER);
  router.iq('get', 'account', NS.REGISTER, 'query', ({ self, to }) => {
    if (!self) throw new StanzaError('forbidden');
    const query = new Element('query', { xmlns: NS.REGISTER });
    query.c('registered');
    query.c('username').t(to.local);
    return query;
  });
  router.iq('set', 'account', NS.REGISTER, 'query', async ({ payload, self, to, session }) => {
    if (!self) throw new StanzaError('forbidden');
    const user = to.bareString();
    if (payload.getChild('remove')) {
      // XEP-0077 §3.2: the account goes, and with it every session.
      await storage.users.delete(user);
      setImmediate(() => {
        for (const resource of sessions.resources(user)) resource.sink.close();
      });
      return null;
    }
    const username = payload.getChildText('username');
    const password = payload.getChildText('password');
    if (!password || (username !== null && username.toLowerCase() !== to.local)) throw new StanzaError('bad-request');
    checkPassword(password);
    await storage.users.setCredentials(user, await deriveScramCredentialsAsync(password, config.scramIterations));
    ctx.logger.info('password changed in band', { conn: session?.id, jid: user });
    return null;
  });
};

/** The pre-authentication half of XEP-0077: registration form and account creation. */
export function registrationHandler({ storage, config, logger }: ModuleContext): PreAuthIqHandler {
  return async (iq, domain) => {
    const reply = (payload?: Element, error?: StanzaError) => {
      const result = new Element('iq', { type: error ? 'error' : 'result', id: iq.attrs.id });
      if (payload) result.cnode(payload);
      if (error) result.cnode(error.toElement());
      return result;
    };
    const query = iq.getChild('query', NS.REGISTER);
    if (!query || (iq.attrs.type !== 'get' && iq.attrs.type !== 'set')) {
      return reply(undefined, new StanzaError('service-unavailable'));
    }
    if (iq.attrs.type === 'get') {
      const form = new Element('query', { xmlns: NS.REGISTER });
      form.c('instructions').t('Choose a username and password for use with this service.');
      form.c('username');
      form.c('password');
      return reply(form);
    }
    try {
      const username = query.getChildText('username') ?? '';
      const password = query.getChildText('password') ?? '';
      if (!username || !password) throw new StanzaError('not-acceptable', 'username and password are required');
      let jid: string;
      try {
        jid = makeJID(username, domain).toString();
      } catch {
        throw new StanzaError('not-acceptable', 'that username is not allowed');
      }
      checkPassword(password);
      await storage.users.create(jid, await deriveScramCredentialsAsync(password, config.scramIterations));
      logger.info('account registered in band', { jid });
      return reply();
    } catch (err) {
      // XEP-0077 §3.1: a taken username is a conflict.
      if (err instanceof UserExistsError) return reply(undefined, new StanzaError('conflict', 'that username is taken'));
      if (err instanceof StanzaError) return reply(undefined, err);
      throw err;
    }
  };
}

function checkPassword(password: string): void {
  if ([...password].length < MIN_PASSWORD_LENGTH) {
    throw new StanzaError('not-acceptable', `the password needs at least ${MIN_PASSWORD_LENGTH} characters`);
  }
}
