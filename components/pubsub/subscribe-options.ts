import type { Element } from 'ltx';
import { buildDataForm, parseFormBoolean, readDataForm } from '../../server/xml/data-form';
import { pubsubError } from './errors';

export const SUBSCRIBE_OPTIONS_FORM = 'http://jabber.org/protocol/pubsub#subscribe_options';

/** XEP-0060 §6.3: the one option we keep, pubsub#deliver (notifications on or off). */
export function subscribeOptions(current: Record<string, unknown>, x: Element): Record<string, unknown> {
  const form = readDataForm(x);
  if (form.formType !== undefined && form.formType !== SUBSCRIBE_OPTIONS_FORM) throw pubsubError('bad-request', 'invalid-options', `FORM_TYPE must be ${SUBSCRIBE_OPTIONS_FORM}`);
  const next = { ...current };
  const deliver = form.fields.get('pubsub#deliver');
  if (deliver !== undefined) {
    const value = parseFormBoolean(deliver[0] ?? '');
    // §6.3.6.1: "<bad-request/> ... <invalid-options/>".
    if (value === undefined) throw pubsubError('bad-request', 'invalid-options', 'pubsub#deliver is a boolean');
    next.deliver = value;
  }
  return next;
}

/** §6.3.2 / §6.4: the subscription options form with the current (or default) values. */
export function subscribeOptionsForm(options: Record<string, unknown>): Element {
  return buildDataForm('form', SUBSCRIBE_OPTIONS_FORM, [
    { var: 'pubsub#deliver', type: 'boolean', label: 'Enable delivery?', values: [options.deliver === false ? '0' : '1'] },
  ]);
}
