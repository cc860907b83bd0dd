import type { Element } from 'ltx';
import { StanzaError } from '../../server/errors';
import { buildDataForm, parseFormBoolean, readDataForm, type DataField } from '../../server/xml/data-form';
import type { MucOptions } from './options';

export type Whois = 'moderators' | 'anyone';
export type AllowPm = 'anyone' | 'participants' | 'moderators' | 'none';

/** A room's configuration (XEP-0045 §10.2, the muc#roomconfig FORM_TYPE), stored as JSON. */
export interface RoomConfig {
  name: string;
  description: string;
  persistent: boolean;
  public: boolean;
  membersOnly: boolean;
  passwordProtected: boolean;
  password: string;
  moderated: boolean;
  whois: Whois;
  changeSubject: boolean;
  allowInvites: boolean;
  allowPm: AllowPm;
  /** 0: no limit. */
  maxUsers: number;
  historyLength: number;
}

export const ROOMCONFIG_FORM_TYPE = 'http://jabber.org/protocol/muc#roomconfig';
export const ROOMINFO_FORM_TYPE = 'http://jabber.org/protocol/muc#roominfo';

/** XEP-0004 §3.3 booleans as this component writes them. */
const booleanValue = (value: boolean): string => (value ? '1' : '0');

export function defaultConfig(options: MucOptions): RoomConfig {
  return {
    name: '',
    description: '',
    persistent: options.defaultPersistent,
    public: options.defaultPublic,
    membersOnly: false,
    passwordProtected: false,
    password: '',
    moderated: false,
    whois: 'moderators',
    changeSubject: false,
    allowInvites: false,
    allowPm: 'anyone',
    maxUsers: options.maxUsers,
    historyLength: options.historySize,
  };
}

/** A stored configuration, completed with today's defaults for fields added since it was written. */
export function parseStoredConfig(json: string, options: MucOptions): RoomConfig {
  const stored = JSON.parse(json) as Partial<RoomConfig>;
  return { ...defaultConfig(options), ...stored };
}

const MAX_USERS_CHOICES = ['5', '10', '20', '30', '50', '100', '200', '500', '1000', '0'];

/** XEP-0045 §10.2: the form an owner gets to configure the room. */
export function configForm(config: RoomConfig, options: MucOptions): Element {
  const fields: DataField[] = [
    { var: 'muc#roomconfig_roomname', type: 'text-single', label: 'Natural-Language Room Name', values: [config.name] },
    { var: 'muc#roomconfig_roomdesc', type: 'text-single', label: 'Short Description of Room', values: [config.description] },
    { var: 'muc#roomconfig_persistentroom', type: 'boolean', label: 'Make Room Persistent?', values: [booleanValue(config.persistent)] },
    { var: 'muc#roomconfig_publicroom', type: 'boolean', label: 'Make Room Publicly Searchable?', values: [booleanValue(config.public)] },
    { var: 'muc#roomconfig_membersonly', type: 'boolean', label: 'Make Room Members-Only?', values: [booleanValue(config.membersOnly)] },
    { var: 'muc#roomconfig_moderatedroom', type: 'boolean', label: 'Make Room Moderated?', values: [booleanValue(config.moderated)] },
    { var: 'muc#roomconfig_passwordprotectedroom', type: 'boolean', label: 'Password Required to Enter?', values: [booleanValue(config.passwordProtected)] },
    { var: 'muc#roomconfig_roomsecret', type: 'text-private', label: 'Password', values: [config.password] },
    {
      var: 'muc#roomconfig_whois',
      type: 'list-single',
      label: 'Who May Discover Real JIDs?',
      values: [config.whois],
      options: [{ label: 'Moderators Only', value: 'moderators' }, { label: 'Anyone', value: 'anyone' }],
    },
    { var: 'muc#roomconfig_changesubject', type: 'boolean', label: 'Allow Occupants to Change Subject?', values: [booleanValue(config.changeSubject)] },
    { var: 'muc#roomconfig_allowinvites', type: 'boolean', label: 'Allow Occupants to Invite Others?', values: [booleanValue(config.allowInvites)] },
    {
      var: 'muc#roomconfig_allowpm',
      type: 'list-single',
      label: 'Who May Send Private Messages?',
      values: [config.allowPm],
      options: ['anyone', 'participants', 'moderators', 'none'].map((value) => ({ value })),
    },
    {
      var: 'muc#roomconfig_maxusers',
      type: 'list-single',
      label: 'Maximum Number of Occupants (0: no limit)',
      values: [String(config.maxUsers)],
      options: MAX_USERS_CHOICES.map((value) => ({ value })),
    },
    {
      var: 'muc#roomconfig_historylength',
      type: 'text-single',
      label: `Messages of History Kept (at most ${options.historyMax})`,
      values: [String(config.historyLength)],
    },
  ];
  return buildDataForm('form', ROOMCONFIG_FORM_TYPE, fields, 'Room configuration');
}

/**
 * Applies a submitted muc#roomconfig form (XEP-0045 §10.2) to a copy of `current`. Fields left
 * out keep their value (an empty form is the instant room of §10.1.2). Bad values are
 * not-acceptable and change nothing.
 */
export function applyConfigForm(current: RoomConfig, x: Element, options: MucOptions): RoomConfig {
  const next = { ...current };
  const form = readDataForm(x);
  if (form.formType !== undefined && form.formType !== ROOMCONFIG_FORM_TYPE) throw new StanzaError('bad-request', `FORM_TYPE must be ${ROOMCONFIG_FORM_TYPE}`);
  const one = (field: string): string | undefined => form.fields.get(field)?.[0];
  const bool = (field: string): boolean | undefined => {
    const v = one(field);
    if (v === undefined) return undefined;
    const value = parseFormBoolean(v);
    if (value === undefined) throw new StanzaError('not-acceptable', `${field} must be a boolean`);
    return value;
  };
  const int = (field: string, max: number): number | undefined => {
    const v = one(field);
    if (v === undefined) return undefined;
    const n = Number(v.trim());
    if (!Number.isInteger(n) || n < 0) throw new StanzaError('not-acceptable', `${field} must be a non-negative integer`);
    return Math.min(n, max);
  };
  next.name = one('muc#roomconfig_roomname') ?? next.name;
  next.description = one('muc#roomconfig_roomdesc') ?? next.description;
  next.persistent = bool('muc#roomconfig_persistentroom') ?? next.persistent;
  next.public = bool('muc#roomconfig_publicroom') ?? next.public;
  next.membersOnly = bool('muc#roomconfig_membersonly') ?? next.membersOnly;
  next.moderated = bool('muc#roomconfig_moderatedroom') ?? next.moderated;
  next.passwordProtected = bool('muc#roomconfig_passwordprotectedroom') ?? next.passwordProtected;
  next.password = one('muc#roomconfig_roomsecret') ?? next.password;
  next.changeSubject = bool('muc#roomconfig_changesubject') ?? next.changeSubject;
  next.allowInvites = bool('muc#roomconfig_allowinvites') ?? next.allowInvites;
  const whois = one('muc#roomconfig_whois');
  if (whois !== undefined) {
    if (whois !== 'moderators' && whois !== 'anyone') throw new StanzaError('not-acceptable', 'muc#roomconfig_whois must be moderators or anyone');
    next.whois = whois;
  }
  const allowPm = one('muc#roomconfig_allowpm');
  if (allowPm !== undefined) {
    if (!['anyone', 'participants', 'moderators', 'none'].includes(allowPm)) throw new StanzaError('not-acceptable', 'bad muc#roomconfig_allowpm');
    next.allowPm = allowPm as AllowPm;
  }
  next.maxUsers = int('muc#roomconfig_maxusers', 1_000_000) ?? next.maxUsers;
  // muc#maxhistoryfetch is the name XEP-0045's registry gives; ejabberd and Prosody use historylength.
  next.historyLength = int('muc#roomconfig_historylength', options.historyMax) ?? int('muc#maxhistoryfetch', options.historyMax) ?? next.historyLength;
  // A password-protected room without a password would let nobody (or everybody) in.
  if (next.passwordProtected && next.password === '') throw new StanzaError('not-acceptable', 'a password-protected room needs muc#roomconfig_roomsecret');
  return next;
}

/** XEP-0045 §6.4: the features that describe a room in disco#info. */
export function roomFeatures(config: RoomConfig): string[] {
  return [
    config.persistent ? 'muc_persistent' : 'muc_temporary',
    config.membersOnly ? 'muc_membersonly' : 'muc_open',
    config.passwordProtected ? 'muc_passwordprotected' : 'muc_unsecured',
    config.public ? 'muc_public' : 'muc_hidden',
    config.moderated ? 'muc_moderated' : 'muc_unmoderated',
    config.whois === 'anyone' ? 'muc_nonanonymous' : 'muc_semianonymous',
  ];
}

/** XEP-0045 §6.4 (XEP-0128): extended room information. */
export function roomInfoForm(config: RoomConfig, subject: string, occupants: number): Element {
  return buildDataForm('result', ROOMINFO_FORM_TYPE, [
    { var: 'muc#roominfo_description', type: 'text-single', label: 'Description', values: [config.description] },
    { var: 'muc#roominfo_subject', type: 'text-single', label: 'Subject', values: [subject] },
    { var: 'muc#roominfo_subjectmod', type: 'boolean', label: 'Occupants May Change the Subject', values: [booleanValue(config.changeSubject)] },
    { var: 'muc#roominfo_occupants', type: 'text-single', label: 'Number of occupants', values: [String(occupants)] },
    { var: 'muc#roomconfig_roomname', type: 'text-single', label: 'Name', values: [config.name] },
    { var: 'muc#maxhistoryfetch', type: 'text-single', label: 'Maximum Number of History Messages Returned by Room', values: [String(config.historyLength)] },
  ]);
}
