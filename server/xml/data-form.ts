import { Element } from 'ltx';
import { NS } from './ns';

/** XEP-0004 §3.3 field types. */
export type DataFieldType =
  | 'boolean' | 'fixed' | 'hidden' | 'jid-multi' | 'jid-single'
  | 'list-multi' | 'list-single' | 'text-multi' | 'text-private' | 'text-single';

export interface DataField {
  var: string;
  type?: DataFieldType;
  label?: string;
  values: string[];
  options?: { label?: string; value: string }[];
  /** XEP-0122 §3.3 `<open/>`: values beyond `options` (if any) are taken, e.g. a list-multi of ids. */
  open?: boolean;
}

/** A parsed `<x xmlns='jabber:x:data'/>`: its type, FORM_TYPE (XEP-0068) and values by field var. */
export interface DataForm {
  type: string;
  formType?: string;
  fields: Map<string, string[]>;
}

/** A form of `type` with a hidden FORM_TYPE field first (XEP-0068 §3), then `fields`. */
export function buildDataForm(type: 'form' | 'submit' | 'result', formType: string, fields: DataField[], title?: string): Element {
  const x = new Element('x', { xmlns: NS.DATA_FORMS, type });
  if (title) x.c('title').t(title);
  x.c('field', { var: 'FORM_TYPE', type: 'hidden' }).c('value').t(formType);
  for (const field of fields) {
    const attrs: Record<string, string> = { var: field.var };
    if (field.type) attrs.type = field.type;
    if (field.label) attrs.label = field.label;
    const element = x.c('field', attrs);
    for (const value of field.values) element.c('value').t(value);
    for (const option of field.options ?? []) element.c('option', option.label ? { label: option.label } : {}).c('value').t(option.value);
    if (field.open) element.c('validate', { xmlns: NS.DATA_VALIDATE, datatype: 'xs:string' }).c('open');
  }
  return x;
}

/** Reads a data form (XEP-0004 §3.4); the FORM_TYPE value is taken out of the fields. */
export function readDataForm(x: Element): DataForm {
  const fields = new Map<string, string[]>();
  for (const field of x.getChildren('field')) {
    const name = field.attrs.var as string | undefined;
    if (name) fields.set(name, field.getChildren('value').map((v) => v.getText()));
  }
  const formType = fields.get('FORM_TYPE')?.[0];
  fields.delete('FORM_TYPE');
  return { type: String(x.attrs.type ?? ''), formType, fields };
}

/** The first `<x xmlns='jabber:x:data'/>` child of `parent`, if any. */
export function dataFormIn(parent: Element | undefined): Element | undefined {
  return parent?.getChild('x', NS.DATA_FORMS);
}

/** XEP-0004 §3.3 boolean: "0"/"false" or "1"/"true"; undefined for anything else. */
export function parseFormBoolean(value: string): boolean | undefined {
  const v = value.trim().toLowerCase();
  if (v === '1' || v === 'true') return true;
  if (v === '0' || v === 'false') return false;
  return undefined;
}
