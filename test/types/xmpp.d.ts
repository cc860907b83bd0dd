/**
 * @xmpp/client and @xmpp/component (xmpp.js 0.14) ship no type declarations. The tests drive them
 * as their documentation shows; the clients stay untyped (`any`), the XML builder is ltx's.
 */
declare module '@xmpp/client' {
  import type { Element } from 'ltx';
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  export function client(options: Record<string, unknown>): any;
  export function xml(name: string, attrs?: Record<string, string | number | undefined> | null, ...children: (Element | string)[]): Element;
}

declare module '@xmpp/component' {
  import type { Element } from 'ltx';
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  export function component(options: Record<string, unknown>): any;
  export function xml(name: string, attrs?: Record<string, string | number | undefined> | null, ...children: (Element | string)[]): Element;
}
