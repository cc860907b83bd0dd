import { Element } from 'ltx';
import { deriveScramCredentialsAsync } from '../c2s/sasl/scram';
import type { PreAuthIqHandler } from '../c2s/stream';
import { StanzaError, StreamError } from '../errors';
import { makeJID, tryParseJID } from '../jid';
import type { IqHandler, IqRequest } from '../router';
import { UserExistsError, ValueTooLongError } from '../storage/types';
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

  const get: IqHandler = (req) => {
    const user = accountOf(req);
    const query = new Element('query', { xmlns: NS.REGISTER });
    query.c('registered');
    query.c('username').t(user.slice(0, user.indexOf('@')));
    return query;
  };

  const set: IqHandler = async (req) => {
    const { payload, session } = req;
    const user = accountOf(req);
    if (payload.getChild('remove')) {
      // §3.2: "The <remove/> element was not the only child element of the <query/> element" -> bad-request.
      if (payload.getChildElements().length !== 1) throw new StanzaError('bad-request', '<remove/> must be alone');
      await deleteAccount(ctx, user);
      ctx.logger.info('account removed in band', { conn: session?.id, jid: user });
      // §3.2: "the server SHOULD then return a <not-authorized/> stream error and terminate all
      // active sessions for the entity" (after the result, which the router sends now).
      setImmediate(() => {
        for (const resource of sessions.resources(user)) resource.sink.close(new StreamError('not-authorized', 'the account was removed'));
      });
      return null;
    }
    const username = payload.getChildText('username');
    const password = payload.getChildText('password');
    // §3.3: "The server or service SHOULD NOT return the original XML sent in IQ error stanzas
    // related to password changes"; the router echoes the payload in errors, so it goes first.
    payload.children = [];
    if (!password || (username !== null && username.toLowerCase() !== user.slice(0, user.indexOf('@')))) throw new StanzaError('bad-request');
    checkPassword(password);
    await storage.users.setCredentials(user, await deriveScramCredentialsAsync(password, config.scramIterations));
    ctx.logger.info('password changed in band', { conn: session?.id, jid: user });
    return null;
  };

  // §3.2 sends the remove without 'to' (the account), §3.3 the password change to the server.
  for (const target of ['account', 'host'] as const) {
    router.iq('get', target, NS.REGISTER, 'query', get);
    router.iq('set', target, NS.REGISTER, 'query', set);
  }
};

/** The account a post-authentication request is about: the sender's own, nobody else's. */
function accountOf({ self, from, to }: IqRequest): string {
  if (to.local) {
    if (!self) throw new StanzaError('forbidden');
    return to.bareString();
  }
  // Addressed to the server: the sender's account, if it lives on that server.
  if (!from.local || from.domain !== to.domain) throw new StanzaError('forbidden');
  return from.bareString();
}

/**
 * Deletes an account and everything stored for it, cancelling its presence subscriptions first
 * (XEP-0077 §3.2, also for XEP-0133 delete-user); its sessions are the caller's to end. False when
 * there was no such account.
 */
export async function deleteAccount(ctx: ModuleContext, user: string): Promise<boolean> {
  await cancelSubscriptions(ctx, user);
  const deleted = await ctx.storage.users.delete(user);
  // The roster went with the account: the sessions' own unavailable broadcast must not find it cached.
  ctx.roster.forget(user);
  return deleted;
}

/**
 * XEP-0077 §3.2: "the server SHOULD also cancel all existing presence subscriptions related to that
 * entity": contacts who saw the user's presence see it go unavailable and are unsubscribed, the
 * user's own subscriptions and pending requests are cancelled (RFC 6121 §3.2, §3.3).
 */
async function cancelSubscriptions({ router, roster, sessions, storage }: ModuleContext, user: string): Promise<void> {
  const bare = tryParseJID(user)!;
  const local = (jid: string) => {
    const parsed = tryParseJID(jid);
    return parsed && (router.hosts.has(parsed.domain) || router.componentDomains().includes(parsed.domain)) ? parsed : undefined;
  };
  const sends: Promise<void>[] = [];
  const send = (type: string, from: string, to: string) => {
    const target = local(to);
    if (target) sends.push(router.route(new Element('presence', { type, from, to }), tryParseJID(from)!, target));
  };
  const items = await roster.items(user);
  // The roster is deleted before the sessions end, so their own unavailable broadcast would miss
  // the subscribers (recipients of directed presence are still told then).
  for (const resource of sessions.resources(user)) {
    if (!resource.available) continue;
    for (const item of items) if (item.subscription === 'from' || item.subscription === 'both') send('unavailable', resource.full, item.jid);
  }
  for (const item of items) {
    if (item.subscription === 'to' || item.subscription === 'both' || item.ask) send('unsubscribe', user, item.jid);
    if (item.subscription === 'from' || item.subscription === 'both') send('unsubscribed', user, item.jid);
  }
  for (const { contact } of await storage.roster.getPendingIn(user)) send('unsubscribed', bare.toString(), contact);
  await Promise.all(sends);
}

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
      // A valid but longer username than storage keeps: refused like any other unacceptable name.
      if (err instanceof ValueTooLongError) return reply(undefined, new StanzaError('not-acceptable', 'that username is too long'));
      if (err instanceof StanzaError) return reply(undefined, err);
      throw err;
    }
  };
}

/** Passwords shorter than the minimum are refused (not-acceptable), here and by admin commands. */
export function checkPassword(password: string): void {
  if ([...password].length < MIN_PASSWORD_LENGTH) {
    throw new StanzaError('not-acceptable', `the password needs at least ${MIN_PASSWORD_LENGTH} characters`);
  }
}
