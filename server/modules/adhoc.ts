import { randomBytes } from 'node:crypto';
import { Element } from 'ltx';
import { StanzaError, type StanzaErrorCondition } from '../errors';
import type { JID } from '../jid';
import type { IqRequest, Router } from '../router';
import { dataFormIn, readDataForm } from '../xml/data-form';
import { NS } from '../xml/ns';

/**
 * One XEP-0050 command of the server. A command with a `form` takes two stages (the form, then
 * its submission); one without completes at once.
 */
export interface AdHocCommand {
  node: string;
  name: string;
  /** Who may list and run it. */
  allowed(from: JID): boolean;
  /** The form to fill in (`<x type='form'/>`), when the command needs input. */
  form?(req: IqRequest): Element;
  /** Does the work with the submitted values (empty without a form). */
  complete(values: Map<string, string[]>, req: IqRequest): Promise<CommandOutcome>;
}

/** What a completed command shows: a result form, and/or a note (XEP-0050 §3.4.4). */
export interface CommandOutcome {
  form?: Element;
  note?: { type: 'info' | 'warn' | 'error'; text: string };
}

/**
 * The command cannot do what was asked (an account exists, two passwords differ): it completes
 * with an error note, as clients show it (XEP-0050 §4.3), rather than an IQ error.
 */
export class CommandFailure extends Error {}

/** An IQ error with one of XEP-0050's application conditions (§4.6). */
function commandError(condition: StanzaErrorCondition, specific: string, text?: string): StanzaError {
  return new StanzaError(condition, text, undefined, new Element(specific, { xmlns: NS.COMMANDS }));
}

/** A multi-stage command waits this long for its next stage, then its session is gone [600 s]. */
const SESSION_TIMEOUT_MS = 600_000;
/** Open command sessions per requesting full JID; the oldest is dropped beyond it [10]. */
const SESSIONS_PER_REQUESTER = 10;

interface CommandSession {
  node: string;
  requester: string;
  expires: number;
}

/**
 * Serves `commands` at the server's domains (XEP-0050): listed at the disco node
 * `http://jabber.org/protocol/commands` (each requester sees the ones it may run), described at
 * their own nodes, and run with `<command action='execute|complete|cancel'/>`. Sessions live on
 * the node that answered the first stage, which is the node the client is connected to.
 */
export function serveCommands(router: Router, commands: AdHocCommand[]): void {
  const byNode = new Map(commands.map((c) => [c.node, c]));
  const sessions = new Map<string, CommandSession>();

  router.feature('host', NS.COMMANDS);
  router.discoNode(NS.COMMANDS, {
    items(req) {
      const query = new Element('query', { xmlns: NS.DISCO_ITEMS, node: NS.COMMANDS });
      for (const command of commands) {
        if (command.allowed(req.from)) query.c('item', { jid: req.to.toString(), node: command.node, name: command.name });
      }
      return query;
    },
    info() {
      const query = new Element('query', { xmlns: NS.DISCO_INFO, node: NS.COMMANDS });
      query.c('identity', { category: 'automation', type: 'command-list', name: 'Commands' });
      return query;
    },
  });
  for (const command of commands) {
    router.discoNode(command.node, {
      info(req) {
        if (!command.allowed(req.from)) throw new StanzaError('forbidden');
        const query = new Element('query', { xmlns: NS.DISCO_INFO, node: command.node });
        query.c('identity', { category: 'automation', type: 'command-node', name: command.name });
        query.c('feature', { var: NS.COMMANDS });
        query.c('feature', { var: NS.DATA_FORMS });
        return query;
      },
      items: () => new Element('query', { xmlns: NS.DISCO_ITEMS, node: command.node }),
    });
  }

  const prune = () => {
    const now = Date.now();
    for (const [id, session] of sessions) if (session.expires <= now) sessions.delete(id);
  };

  router.iq('set', 'host', NS.COMMANDS, 'command', async (req) => {
    const { payload } = req;
    const node = String(payload.attrs.node ?? '');
    const command = byNode.get(node);
    if (!command) throw new StanzaError('item-not-found', `no command ${node}`);
    if (!command.allowed(req.from)) throw new StanzaError('forbidden', 'this command is for the server administrators');
    const action = String(payload.attrs.action ?? 'execute');
    const sessionId = payload.attrs.sessionid as string | undefined;
    const reply = (status: string, id: string, children: Element[] = []) => {
      const el = new Element('command', { xmlns: NS.COMMANDS, node, sessionid: id, status });
      for (const child of children) el.cnode(child);
      return el;
    };
    prune();

    if (sessionId === undefined) {
      if (action !== 'execute' && action !== 'complete') throw commandError('bad-request', 'bad-action', `${action} needs a session`);
      if (!command.form) return finish(command, new Map(), req, randomId(), reply);
      const id = randomId();
      const requester = req.from.toString();
      const mine = [...sessions].filter(([, s]) => s.requester === requester);
      if (mine.length >= SESSIONS_PER_REQUESTER) sessions.delete(mine[0][0]);
      sessions.set(id, { node, requester, expires: Date.now() + SESSION_TIMEOUT_MS });
      const actions = new Element('actions', { execute: 'complete' });
      actions.c('complete');
      return reply('executing', id, [actions, command.form(req)]);
    }

    const session = sessions.get(sessionId);
    if (!session || session.node !== node || session.requester !== req.from.toString()) {
      throw commandError('bad-request', 'bad-sessionid', 'no such command session (it may have expired)');
    }
    if (action === 'cancel') {
      sessions.delete(sessionId);
      return reply('canceled', sessionId);
    }
    if (action !== 'execute' && action !== 'complete') throw commandError('bad-request', 'bad-action', `${action} is not offered: the command has one stage`);
    const x = dataFormIn(payload);
    if (!x || x.attrs.type !== 'submit') throw commandError('bad-request', 'bad-payload', 'submit the form (<x type="submit"/>)');
    sessions.delete(sessionId);
    return finish(command, readDataForm(x).fields, req, sessionId, reply);
  });
}

async function finish(
  command: AdHocCommand,
  values: Map<string, string[]>,
  req: IqRequest,
  id: string,
  reply: (status: string, id: string, children?: Element[]) => Element,
): Promise<Element> {
  let outcome: CommandOutcome;
  try {
    outcome = await command.complete(values, req);
  } catch (err) {
    if (!(err instanceof CommandFailure)) throw err;
    outcome = { note: { type: 'error', text: err.message } };
  }
  const children: Element[] = [];
  if (outcome.note) children.push(new Element('note', { type: outcome.note.type }).t(outcome.note.text));
  if (outcome.form) children.push(outcome.form);
  return reply('completed', id, children);
}

function randomId(): string {
  return randomBytes(9).toString('base64url');
}
