import type { Element } from 'ltx';
import { xml, type XmppClient } from './server';

export const COMMANDS = 'http://jabber.org/protocol/commands';
export const ADMIN = 'http://jabber.org/protocol/admin';

/** The `<command/>` of an IQ result. */
function commandOf(reply: Element): Element {
  const command = reply.getChild('command', COMMANDS);
  if (!command) throw new Error(`no <command/> in ${reply.toString()}`);
  return command;
}

/** Sends one stage of command `node` (XEP-0050) and returns the `<command/>` answered. */
export async function commandStage(
  client: XmppClient,
  node: string,
  opts: { sessionid?: string; action?: string; fields?: Record<string, string | string[]>; to?: string } = {},
): Promise<Element> {
  const attrs: Record<string, string> = { xmlns: COMMANDS, node };
  if (opts.sessionid) attrs.sessionid = opts.sessionid;
  if (opts.action) attrs.action = opts.action;
  const children = opts.fields
    ? [xml('x', { xmlns: 'jabber:x:data', type: 'submit' },
        xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, ADMIN)),
        ...Object.entries(opts.fields).map(([name, value]) => xml('field', { var: name }, ...(Array.isArray(value) ? value : [value]).map((v) => xml('value', {}, v)))))]
    : [];
  return commandOf(await client.iqCaller.request(xml('iq', { type: 'set', to: opts.to ?? 'localhost' }, xml('command', attrs, ...children))));
}

/**
 * Runs XEP-0133 command `name` the way a client does: execute, and when a form comes back, submit
 * `fields` with the session id. Returns the final `<command/>`.
 */
export async function runAdminCommand(client: XmppClient, name: string, fields: Record<string, string | string[]> = {}, to = 'localhost'): Promise<Element> {
  const node = `${ADMIN}#${name}`;
  const first = await commandStage(client, node, { action: 'execute', to });
  if (first.attrs.status !== 'executing') return first;
  return commandStage(client, node, { sessionid: first.attrs.sessionid, fields, to });
}

/** The values of field `name` in a command's result form. */
export function fieldValues(command: Element, name: string): string[] {
  const field = command.getChild('x', 'jabber:x:data')?.getChildren('field').find((f) => f.attrs.var === name);
  return field ? field.getChildren('value').map((v) => v.getText()) : [];
}

/** A command's note: "type: text". */
export function noteOf(command: Element): string {
  const note = command.getChild('note');
  return note ? `${note.attrs.type}: ${note.getText()}` : '';
}
