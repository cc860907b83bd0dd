import { Element } from 'ltx';
import { deriveScramCredentialsAsync } from '../c2s/sasl/scram';
import { StanzaError } from '../errors';
import { tryParseJID, type JID } from '../jid';
import { hostOf } from '../net-address';
import type { IqRequest } from '../router';
import type { Outcome } from '../sm/session-admin';
import { UserExistsError } from '../storage/types';
import { buildDataForm, type DataField } from '../xml/data-form';
import { NS } from '../xml/ns';
import { CommandFailure, serveCommands, type AdHocCommand, type CommandOutcome } from './adhoc';
import type { ModuleContext, ServerModule } from './module';
import { checkPassword, deleteAccount } from './register';

/** The choices XEP-0133 offers for list sizes; "none" means all [§4.21]. */
const MAX_ITEMS_OPTIONS = ['25', '50', '75', '100', '150', '200', 'none'];
/** Accounts one command may name at once (a jid-multi field) [100]. */
const MAX_ACCOUNTS_PER_COMMAND = 100;

/**
 * XEP-0133 service administration as XEP-0050 commands, for the JIDs in --admins only, each
 * acting on the domain it is sent to and on every node of the cluster: a session ended from
 * node A ends on node C.
 */
export const admin: ServerModule = (ctx) => {
  const { config, storage, logger } = ctx;
  const sessions = ctx.admin;
  if (!sessions) throw new Error('the admin module needs the session admin');
  const isAdmin = (from: JID) => config.admins.includes(from.bareString());
  const log = logger.category('admin');

  const command = (
    name: string,
    title: string,
    fields: ((req: IqRequest) => DataField[]) | undefined,
    complete: (values: Values, req: IqRequest) => Promise<CommandOutcome>,
  ): AdHocCommand => ({
    node: `${NS.ADMIN}#${name}`,
    name: title,
    allowed: isAdmin,
    form: fields && ((req) => buildDataForm('form', NS.ADMIN, fields(req), title)),
    complete: (values, req) => {
      log.info('admin command', { command: name, admin: req.from.bareString(), domain: req.to.domain });
      return complete(new Values(values, req.to.domain), req);
    },
  });

  const result = (fields: DataField[]) => ({ form: buildDataForm('result', NS.ADMIN, fields) });
  const done = (text: string, unanswered: string[] = []): CommandOutcome => ({
    note: unanswered.length > 0
      ? { type: 'warn', text: `${text ? `${text} ` : ''}Nodes that did not answer (their part is missing): ${unanswered.join(', ')}.` }
      : { type: 'info', text },
  });
  /** A result form, with a warning when some nodes did not answer. */
  const gathered = (fields: DataField[], unanswered: string[]): CommandOutcome => ({ ...result(fields), ...(unanswered.length > 0 ? done('', unanswered) : {}) });
  const accountsField: DataField = { var: 'accountjids', type: 'jid-multi', label: 'The Jabber IDs of the accounts', values: [] };
  const accountField: DataField = { var: 'accountjid', type: 'jid-single', label: 'The Jabber ID of the account', values: [] };
  const maxItemsField: DataField = {
    var: 'max_items', type: 'list-single', label: 'Maximum number of items to show', values: ['25'],
    options: MAX_ITEMS_OPTIONS.map((value) => ({ label: value, value })),
  };

  /** Ends the accounts' sessions everywhere, for `reason`. */

  serveCommands(ctx.router, [
    command('add-user', 'Add a User', () => [
      { ...accountField, label: 'The Jabber ID for the account to be added' },
      { var: 'password', type: 'text-private', label: 'The password for this account', values: [] },
      { var: 'password-verify', type: 'text-private', label: 'Retype password', values: [] },
    ], async (values) => {
      const jid = values.account('accountjid');
      const password = values.password();
      try {
        await storage.users.create(jid, await deriveScramCredentialsAsync(password, config.scramIterations));
      } catch (err) {
        if (err instanceof UserExistsError) throw new CommandFailure(`${jid} already exists`);
        throw err;
      }
      return done(`Created ${jid}.`);
    }),

    command('delete-user', 'Delete a User', () => [{ ...accountsField, label: 'The Jabber IDs of the accounts to be deleted' }], async (values) => {
      const jids = values.accounts('accountjids');
      // Their sessions end first, on every node, while their rosters still say whom to tell.
      const { unanswered } = await sessions.end(jids, 'the account was deleted');
      const deleted: string[] = [];
      for (const jid of jids) if (await deleteAccount(ctx, jid)) deleted.push(jid);
      return done(summary('Deleted', deleted, jids), unanswered);
    }),

    command('disable-user', 'Disable a User', () => [{ ...accountsField, label: 'The Jabber IDs of the accounts to be disabled' }], async (values) => {
      const jids = values.accounts('accountjids');
      const disabled = await storage.users.setDisabled(jids, true);
      const { unanswered } = await sessions.end(disabled, 'the account was disabled');
      return done(summary('Disabled', disabled, jids), unanswered);
    }),

    command('reenable-user', 'Re-Enable a User', () => [{ ...accountsField, label: 'The Jabber IDs of the accounts to be re-enabled' }], async (values) => {
      const jids = values.accounts('accountjids');
      return done(summary('Re-enabled', await storage.users.setDisabled(jids, false), jids));
    }),

    command('end-user-session', 'End User Session', () => [
      { ...accountsField, label: 'The Jabber IDs of the accounts (a full JID ends one session, a bare JID all of them)' },
    ], async (values) => {
      const { result: ended, unanswered } = await sessions.end(values.accounts('accountjids', true), 'the session was ended by an administrator');
      return done(ended.length === 0 ? 'No such session is online.' : `Ended ${ended.length} session(s).`, unanswered);
    }),

    command('change-user-password', 'Change User Password', () => [
      { ...accountField, label: 'The Jabber ID for this account' },
      { var: 'password', type: 'text-private', label: 'The password for this account', values: [] },
    ], async (values) => {
      const jid = values.account('accountjid');
      const password = values.password(false);
      if (!(await storage.users.setCredentials(jid, await deriveScramCredentialsAsync(password, config.scramIterations)))) {
        throw new CommandFailure(`No such account: ${jid}.`);
      }
      return done(`Changed the password of ${jid}.`);
    }),

    command('user-stats', 'Get User Statistics', () => [accountField], async (values) => {
      const jid = values.account('accountjid');
      const { result: found, unanswered } = await sessions.list({ user: jid });
      return gathered([
        { var: 'accountjid', type: 'jid-single', label: 'The Jabber ID', values: [jid] },
        { var: 'onlineresources', type: 'text-multi', label: 'Online resources', values: found.map((s) => s.jid.slice(jid.length + 1)) },
        { var: 'ipaddresses', type: 'text-multi', label: 'IP addresses', values: [...new Set(found.flatMap((s) => (s.address ? [hostOf(s.address)] : [])))] },
        { var: 'loginsnum', type: 'text-single', label: 'Sessions', values: [String(found.length)] },
        {
          var: 'sessions', type: 'text-multi', label: 'Sessions (JID, node, transport, address, since)',
          values: found.map((s) => [s.jid, s.node, s.transport, s.address ?? '-', s.since].join(' ')),
        },
      ], unanswered);
    }),

    command('get-registered-users-num', 'Get Number of Registered Users', undefined, async (_values, req) => {
      const { registered } = await storage.users.count(req.to.domain);
      return result([{ var: 'registeredusersnum', label: 'The number of registered users', values: [String(registered)] }]);
    }),

    command('get-disabled-users-num', 'Get Number of Disabled Users', undefined, async (_values, req) => {
      const { disabled } = await storage.users.count(req.to.domain);
      return result([{ var: 'disabledusersnum', label: 'The number of disabled users', values: [String(disabled)] }]);
    }),

    command('get-online-users-num', 'Get Number of Online Users', undefined, async (_values, req) => {
      const { result: online, unanswered } = await sessions.list({ domain: req.to.domain });
      const users = new Set(online.map((s) => tryParseJID(s.jid)?.bareString() ?? s.jid));
      return gathered([{ var: 'onlineusersnum', label: 'The number of online users', values: [String(users.size)] }], unanswered);
    }),

    command('get-registered-users-list', 'Get List of Registered Users', () => [maxItemsField], async (values, req) => {
      const jids = await storage.users.list(req.to.domain, values.maxItems());
      return result([{ var: 'registereduserjids', type: 'jid-multi', label: 'The list of all users', values: jids }]);
    }),

    command('get-online-users-list', 'Get List of Online Users', () => [maxItemsField], async (values, req) => {
      const { result: online, unanswered } = await sessions.list({ domain: req.to.domain });
      const users = [...new Set(online.map((s) => tryParseJID(s.jid)?.bareString() ?? s.jid))].sort().slice(0, values.maxItems());
      return gathered([{ var: 'onlineuserjids', type: 'jid-multi', label: 'The list of all online users', values: users }], unanswered);
    }),

    command('announce', 'Send Announcement to Online Users', () => [
      { var: 'subject', type: 'text-single', label: 'Subject', values: [] },
      { var: 'announcement', type: 'text-multi', label: 'Announcement', values: [] },
    ], async (values, req) => {
      const text = values.all('announcement').join('\n');
      if (text.trim() === '') throw new StanzaError('bad-request', 'the announcement is empty');
      const message = new Element('message', { from: req.to.domain, type: 'headline', id: `announce-${Date.now().toString(36)}` });
      const subject = values.first('subject');
      if (subject) message.c('subject').t(subject);
      message.c('body').t(text);
      const { result: count, unanswered } = await sessions.announce(req.to.domain, message);
      return done(`Sent to ${count} online session(s).`, unanswered);
    }),
  ]);
};

/** The submitted values of one command run at `domain`, read the way XEP-0133 fields are. */
class Values {
  constructor(private readonly values: Map<string, string[]>, private readonly domain: string) {}

  all(name: string): string[] {
    return this.values.get(name) ?? [];
  }

  first(name: string): string | undefined {
    return this.all(name).find((v) => v.trim() !== '')?.trim();
  }

  /** One account of this domain (a bare JID), or bad-request. */
  account(name: string): string {
    const value = this.first(name);
    if (!value) throw new StanzaError('bad-request', `${name} is required`);
    return this.accountJid(value, false);
  }

  /** The accounts named (at least one), bare; full JIDs kept when `full` allows them. */
  accounts(name: string, full = false): string[] {
    const given = this.all(name).map((v) => v.trim()).filter((v) => v !== '');
    if (given.length === 0) throw new StanzaError('bad-request', `${name} is required`);
    if (given.length > MAX_ACCOUNTS_PER_COMMAND) throw new StanzaError('policy-violation', `at most ${MAX_ACCOUNTS_PER_COMMAND} accounts at once`);
    return [...new Set(given.map((v) => this.accountJid(v, full)))];
  }

  /** The password, and its repetition when the form has one; minimum length as for registration. */
  password(verify = true): string {
    const password = this.all('password').join('');
    if (password === '') throw new StanzaError('bad-request', 'password is required');
    if (verify && this.values.has('password-verify') && this.all('password-verify').join('') !== password) {
      throw new CommandFailure('The two passwords differ.');
    }
    try {
      checkPassword(password);
    } catch (err) {
      throw new CommandFailure(`${(err as StanzaError).text ?? 'The password is not acceptable'}.`);
    }
    return password;
  }

  /** max_items as a number; undefined for "none" (all). */
  maxItems(): number | undefined {
    const value = this.first('max_items') ?? '25';
    if (value === 'none') return undefined;
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new StanzaError('bad-request', `max_items "${value}" is not a number`);
    return n;
  }

  private accountJid(value: string, full: boolean): string {
    const jid = tryParseJID(value);
    if (!jid || !jid.local || (jid.resource && !full)) throw new StanzaError('jid-malformed', `"${value}" is not an account JID (user@${this.domain})`);
    // A command acts on the domain it was sent to.
    if (jid.domain !== this.domain) throw new StanzaError('bad-request', `${jid.bareString()} is not an account of ${this.domain}`);
    return jid.toString();
  }
}

/** "Deleted a, b. Not found: c." */
function summary(verb: string, changed: string[], asked: string[]): string {
  const missing = asked.filter((jid) => !changed.includes(jid));
  const parts = [changed.length > 0 ? `${verb} ${changed.join(', ')}.` : `${verb} nothing.`];
  if (missing.length > 0) parts.push(`No such account: ${missing.join(', ')}.`);
  return parts.join(' ');
}
