import type { Element } from 'ltx';
import { StanzaError } from '../../server/errors';
import { buildDataForm, parseFormBoolean, readDataForm, type DataField, type DataFieldType } from '../../server/xml/data-form';

export const NODE_CONFIG_FORM = 'http://jabber.org/protocol/pubsub#node_config';
export const META_DATA_FORM = 'http://jabber.org/protocol/pubsub#meta-data';
export const PUBLISH_OPTIONS_FORM = 'http://jabber.org/protocol/pubsub#publish-options';

export const ACCESS_MODELS = ['open', 'presence', 'roster', 'whitelist'] as const;
export const PUBLISH_MODELS = ['publishers', 'subscribers', 'open'] as const;
export const SEND_LAST_ITEM = ['never', 'on_sub', 'on_sub_and_presence'] as const;
export const NOTIFICATION_TYPES = ['headline', 'normal'] as const;

export type AccessModel = (typeof ACCESS_MODELS)[number];
export type PublishModel = (typeof PUBLISH_MODELS)[number];

/** A leaf node's configuration (XEP-0060 §16.4.4 pubsub#node_config), as the service applies it. */
export interface NodeConfig {
  title: string;
  description: string;
  /** pubsub#type: the payload namespace, informational. */
  type: string;
  maxItems: number;
  persistItems: boolean;
  accessModel: AccessModel;
  /** For the roster access model: owner's roster groups whose members may subscribe. */
  rosterGroupsAllowed: string[];
  publishModel: PublishModel;
  deliverNotifications: boolean;
  deliverPayloads: boolean;
  notifyRetract: boolean;
  notifyDelete: boolean;
  notifyConfig: boolean;
  sendLastPublishedItem: (typeof SEND_LAST_ITEM)[number];
  notificationType: (typeof NOTIFICATION_TYPES)[number];
}

/**
 * XEP-0060's defaults for a new leaf node; a service overrides what its options decide
 * (max_items, access model) and PEP what XEP-0163 decides.
 */
export const BASE_NODE_CONFIG: Readonly<NodeConfig> = Object.freeze({
  title: '',
  description: '',
  type: '',
  maxItems: 10,
  persistItems: true,
  accessModel: 'open',
  rosterGroupsAllowed: [],
  publishModel: 'publishers',
  deliverNotifications: true,
  deliverPayloads: true,
  notifyRetract: true,
  notifyDelete: true,
  notifyConfig: false,
  sendLastPublishedItem: 'on_sub',
  notificationType: 'headline',
});

/** What a service allows for its nodes: the largest max_items ('max' means this). */
export interface ConfigLimits {
  maxItemsLimit: number;
}

interface FieldSpec {
  var: string;
  key: keyof NodeConfig;
  type: DataFieldType;
  label: string;
  options?: readonly string[];
}

/** The fields of the configuration form, in the order clients see them. */
const FIELDS: readonly FieldSpec[] = [
  { var: 'pubsub#title', key: 'title', type: 'text-single', label: 'A friendly name for the node' },
  { var: 'pubsub#description', key: 'description', type: 'text-single', label: 'A description of the node' },
  { var: 'pubsub#type', key: 'type', type: 'text-single', label: 'The type of node data, usually a namespace' },
  { var: 'pubsub#max_items', key: 'maxItems', type: 'text-single', label: 'Maximum number of items to persist ("max" for the service limit)' },
  { var: 'pubsub#persist_items', key: 'persistItems', type: 'boolean', label: 'Persist items to storage' },
  { var: 'pubsub#access_model', key: 'accessModel', type: 'list-single', label: 'Who may subscribe and retrieve items', options: ACCESS_MODELS },
  { var: 'pubsub#roster_groups_allowed', key: 'rosterGroupsAllowed', type: 'list-multi', label: 'Roster groups allowed to subscribe' },
  { var: 'pubsub#publish_model', key: 'publishModel', type: 'list-single', label: 'Who may publish items', options: PUBLISH_MODELS },
  { var: 'pubsub#deliver_notifications', key: 'deliverNotifications', type: 'boolean', label: 'Deliver event notifications' },
  { var: 'pubsub#deliver_payloads', key: 'deliverPayloads', type: 'boolean', label: 'Deliver payloads with event notifications' },
  { var: 'pubsub#notify_retract', key: 'notifyRetract', type: 'boolean', label: 'Notify subscribers when items are removed from the node' },
  { var: 'pubsub#notify_delete', key: 'notifyDelete', type: 'boolean', label: 'Notify subscribers when the node is deleted' },
  { var: 'pubsub#notify_config', key: 'notifyConfig', type: 'boolean', label: 'Notify subscribers when the node configuration changes' },
  { var: 'pubsub#send_last_published_item', key: 'sendLastPublishedItem', type: 'list-single', label: 'When to send the last published item', options: SEND_LAST_ITEM },
  { var: 'pubsub#notification_type', key: 'notificationType', type: 'list-single', label: 'Message type of event notifications', options: NOTIFICATION_TYPES },
];

const BY_VAR = new Map(FIELDS.map((f) => [f.var, f]));

/** A stored configuration over the defaults: fields added in later versions get their default. */
export function storedConfig(defaults: NodeConfig, stored: Record<string, unknown>): NodeConfig {
  return { ...defaults, ...(stored as Partial<NodeConfig>) };
}

/** The configuration form (XEP-0060 §8.2.1) of `type` with the current values. */
export function configForm(config: NodeConfig, limits: ConfigLimits, type: 'form' | 'result' = 'form', formType = NODE_CONFIG_FORM): ReturnType<typeof buildDataForm> {
  const fields: DataField[] = FIELDS.map((spec) => ({
    var: spec.var,
    type: spec.type,
    label: spec.key === 'maxItems' ? `${spec.label}; at most ${limits.maxItemsLimit}` : spec.label,
    values: formatValue(config[spec.key]),
    options: spec.options?.map((value) => ({ value })),
  }));
  return buildDataForm(type, formType, fields);
}

/**
 * XEP-0060 §8.2.4: applies a submitted configuration form to `config`. Fields this service does
 * not know are ignored (clients echo forms they got from other servers); a value it cannot accept
 * is `not-acceptable` (§8.2.5.3 "the service MUST return ... not-acceptable").
 */
export function applyConfigForm(config: NodeConfig, x: Element, limits: ConfigLimits, formType = NODE_CONFIG_FORM): NodeConfig {
  const form = readDataForm(x);
  if (form.type === 'cancel') return config;
  if (form.formType !== undefined && form.formType !== formType) throw new StanzaError('bad-request', `FORM_TYPE must be ${formType}`);
  const next: NodeConfig = { ...config, rosterGroupsAllowed: [...config.rosterGroupsAllowed] };
  for (const [name, values] of form.fields) {
    const spec = BY_VAR.get(name);
    if (spec) (next as unknown as Record<string, unknown>)[spec.key] = parseValue(spec, values, limits);
  }
  return next;
}

/**
 * XEP-0060 §7.1.5: publish-options are preconditions. Returns the fields whose value differs from
 * the node's configuration (an unknown field counts as differing: the service cannot promise it).
 */
export function unmetPreconditions(config: NodeConfig, x: Element, limits: ConfigLimits): string[] {
  const form = readDataForm(x);
  if (form.formType !== undefined && form.formType !== PUBLISH_OPTIONS_FORM) throw new StanzaError('bad-request', `FORM_TYPE must be ${PUBLISH_OPTIONS_FORM}`);
  const unmet: string[] = [];
  for (const [name, values] of form.fields) {
    const spec = BY_VAR.get(name);
    if (!spec) {
      unmet.push(name);
      continue;
    }
    let wanted: unknown;
    try {
      wanted = parseValue(spec, values, limits);
    } catch {
      unmet.push(name);
      continue;
    }
    if (JSON.stringify(wanted) !== JSON.stringify(config[spec.key])) unmet.push(name);
  }
  return unmet;
}

/** XEP-0060 §5.4: the pubsub#meta-data form of disco#info on a node. */
export function metaDataForm(config: NodeConfig, owners: string[], publishers: string[], createdAt: Date): ReturnType<typeof buildDataForm> {
  const fields: DataField[] = [
    { var: 'pubsub#title', values: [config.title] },
    { var: 'pubsub#description', values: [config.description] },
    { var: 'pubsub#type', values: [config.type] },
    { var: 'pubsub#owner', type: 'jid-multi', values: owners },
    { var: 'pubsub#publisher', type: 'jid-multi', values: publishers },
    { var: 'pubsub#creation_date', values: [createdAt.toISOString()] },
    { var: 'pubsub#access_model', values: [config.accessModel] },
    { var: 'pubsub#publish_model', values: [config.publishModel] },
    { var: 'pubsub#max_items', values: [String(config.maxItems)] },
    { var: 'pubsub#persist_items', values: formatValue(config.persistItems) },
    { var: 'pubsub#notification_type', values: [config.notificationType] },
  ];
  return buildDataForm('result', META_DATA_FORM, fields);
}

function parseValue(spec: FieldSpec, values: string[], limits: ConfigLimits): unknown {
  const one = values[0] ?? '';
  const reject = (why: string): never => {
    throw new StanzaError('not-acceptable', `${spec.var}: ${why}`);
  };
  switch (spec.key) {
    case 'maxItems': {
      if (one.trim() === 'max') return limits.maxItemsLimit;
      const n = Number(one.trim());
      if (!Number.isInteger(n) || n < 0) return reject('not a whole number');
      // More than the service keeps means "as many as you can" (what XEP-0402 clients ask with
      // 9999 and mean with "max"): the node keeps its limit, and the same request is a met
      // publish-options precondition the next time.
      return Math.min(n, limits.maxItemsLimit);
    }
    case 'rosterGroupsAllowed':
      return values.map((v) => v.trim()).filter((v) => v !== '');
  }
  if (spec.type === 'boolean') {
    const b = parseFormBoolean(one);
    return b ?? reject('not a boolean');
  }
  if (spec.options) {
    const v = one.trim();
    return spec.options.includes(v) ? v : reject(`one of ${spec.options.join(', ')}`);
  }
  return one;
}

function formatValue(value: unknown): string[] {
  if (Array.isArray(value)) return value.map(String);
  if (typeof value === 'boolean') return [value ? '1' : '0'];
  return [String(value)];
}
