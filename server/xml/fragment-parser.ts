import { Element } from 'ltx';
import type { SaxesParser, SaxesTagPlain } from 'saxes';
import { StreamError } from '../errors';
import { fastAttributes, newSaxesParser } from './saxes';
import type { ParserLimits } from './stream-parser';

export interface FragmentOptions {
  /**
   * Depth of the fragment's root in stream terms: 2 for a WebSocket message (the stanza sits
   * where it would inside <stream:stream>), 1 for a BOSH <body/> (it stands where the stream
   * element would). maxXmlDepth counts the stream element as depth 1 either way.
   */
  rootDepth: 1 | 2;
  /** Largest fragment in bytes [limits.maxStanzaSize]. */
  maxBytes?: number;
}

/**
 * Parses one complete XML element from a message that carries exactly one (RFC 7395 §3.3.3:
 * "every XMPP stanza or other XML element ... MUST be sent in its own separate WebSocket
 * message"; XEP-0124 §4: one <body/> per HTTP body). Same rules and limits as StreamParser:
 * malformed XML, a second root or text around the root is `not-well-formed`; comments,
 * processing instructions and DTDs are `restricted-xml`; bytes that are not UTF-8 are
 * `unsupported-encoding`; limits are `policy-violation`. Whitespace-only input yields undefined.
 * Reusable: parse() is synchronous and a parser that failed is rebuilt.
 */
export class FragmentParser {
  private sax!: SaxesParser<{ xmlns: false; position: false }>;
  private readonly decoder = new TextDecoder('utf-8', { fatal: true });
  private stack: Element[] = [];
  private root?: Element;
  private depth = 0;

  constructor(
    private readonly limits: ParserLimits,
    private readonly options: FragmentOptions,
  ) {
    this.reset();
  }

  parse(data: Buffer | string): Element | undefined {
    const maxBytes = this.options.maxBytes ?? this.limits.maxStanzaSize;
    const bytes = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    if (bytes > maxBytes) throw new StreamError('policy-violation', `stanza larger than ${maxBytes} bytes`);
    let text: string;
    try {
      text = typeof data === 'string' ? data : this.decoder.decode(data);
    } catch {
      throw new StreamError('unsupported-encoding', 'the message is not valid UTF-8');
    }
    if (text.trim() === '') return undefined;
    try {
      this.sax.write(text).close();
    } catch (err) {
      this.reset();
      if (err instanceof StreamError) throw err;
      throw new StreamError('not-well-formed', String((err as Error).message).replace(/^[^:]*:\d+:\d+: /, ''));
    }
    const root = this.root;
    this.root = undefined;
    this.stack = [];
    this.depth = 0;
    if (!root) throw new StreamError('not-well-formed', 'no element');
    return root;
  }

  private reset(): void {
    const sax = newSaxesParser({ xmlns: false, position: false });
    this.sax = sax;
    this.stack = [];
    this.root = undefined;
    this.depth = 0;
    sax.on('error', (err) => {
      throw new StreamError('not-well-formed', err.message.replace(/^[^:]*:\d+:\d+: /, ''));
    });
    sax.on('doctype', () => { throw new StreamError('restricted-xml', 'DTDs are not allowed'); });
    sax.on('comment', () => { throw new StreamError('restricted-xml', 'comments are not allowed'); });
    sax.on('processinginstruction', () => {
      throw new StreamError('restricted-xml', 'processing instructions are not allowed');
    });
    sax.on('xmldecl', (decl) => {
      if (decl.encoding !== undefined && decl.encoding.toLowerCase() !== 'utf-8') {
        throw new StreamError('unsupported-encoding', 'XML must be UTF-8');
      }
    });
    sax.on('opentagstart', fastAttributes);
    sax.on('opentag', (tag) => this.open(tag as SaxesTagPlain));
    sax.on('closetag', () => this.close());
    sax.on('text', (text) => this.text(text));
    sax.on('cdata', (text) => this.text(text));
  }

  private open(tag: SaxesTagPlain): void {
    this.depth++;
    if (this.depth + this.options.rootDepth - 1 > this.limits.maxXmlDepth) {
      throw new StreamError('policy-violation', `elements nested deeper than ${this.limits.maxXmlDepth}`);
    }
    const attrs = tag.attributes as Record<string, string>;
    let count = 0;
    for (const _ in attrs) count++;
    if (count > this.limits.maxAttributes) {
      throw new StreamError('policy-violation', `more than ${this.limits.maxAttributes} attributes on one element`);
    }
    const element = new Element(tag.name, attrs);
    const parent = this.stack[this.stack.length - 1];
    if (parent) parent.cnode(element);
    else this.root = element;
    this.stack.push(element);
  }

  private close(): void {
    this.depth--;
    this.stack.pop();
  }

  private text(text: string): void {
    // saxes itself refuses text outside the root element.
    if (this.depth > 0) this.stack[this.stack.length - 1].t(text);
  }
}
