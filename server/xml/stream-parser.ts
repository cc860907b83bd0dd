import { StringDecoder } from 'node:string_decoder';
import { Element } from 'ltx';
import { SaxesParser, type SaxesTagPlain } from 'saxes';
import { StreamError } from '../errors';
import type { Limits } from '../config/types';

export type ParserLimits = Pick<Limits, 'maxStanzaSize' | 'maxXmlDepth' | 'maxAttributes'>;

export interface StreamParserHandler {
  /** The stream header (depth 1 element) opened: its name and attributes. */
  streamStart(name: string, attrs: Record<string, string>): void;
  /** A complete top-level element (a stanza or a nonza) at depth 2. */
  element(element: Element): void;
  /** The peer closed the stream element. */
  streamEnd(): void;
}

/**
 * Incremental parser for one XML stream (RFC 6120 §4), built on the strict, non-validating saxes
 * parser and producing ltx elements. Every violation throws a StreamError for the caller to send:
 * malformed XML is `not-well-formed`; comments, processing instructions and DTDs are
 * `restricted-xml` (RFC 6120 §11.1: "MUST NOT contain ... comments, processing instructions,
 * internal or external DTD subsets, internal or external entity references"); limits are
 * `policy-violation`. A new parser is made for each stream restart (after STARTTLS and SASL).
 */
export class StreamParser {
  private readonly sax = new SaxesParser({ xmlns: false, position: true });
  private readonly decoder = new StringDecoder('utf8');
  private readonly stack: Element[] = [];
  /** Parser position (characters) where the current top-level element or gap began. */
  private unitStart = 0;
  private depth = 0;
  private failed?: StreamError;
  private ended = false;

  constructor(
    private readonly limits: ParserLimits,
    private readonly handler: StreamParserHandler,
  ) {
    const sax = this.sax;
    sax.on('error', (err) => {
      throw this.fail(new StreamError('not-well-formed', err.message.replace(/^[^:]*:\d+:\d+: /, '')));
    });
    sax.on('doctype', () => { throw this.fail(new StreamError('restricted-xml', 'DTDs are not allowed')); });
    sax.on('comment', () => { throw this.fail(new StreamError('restricted-xml', 'comments are not allowed')); });
    sax.on('processinginstruction', () => {
      throw this.fail(new StreamError('restricted-xml', 'processing instructions are not allowed'));
    });
    sax.on('opentagstart', () => {
      if (this.depth === 1) this.unitStart = sax.position;
    });
    sax.on('opentag', (tag) => this.open(tag as SaxesTagPlain));
    sax.on('closetag', () => this.close());
    sax.on('text', (text) => this.text(text));
    sax.on('cdata', (text) => this.text(text));
  }

  /** Feeds bytes or text; throws StreamError on the first violation (and on every write after). */
  write(chunk: Buffer | string): void {
    if (this.failed) throw this.failed;
    if (this.ended) return;
    const text = typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    if (text.length === 0) return;
    this.sax.write(text);
    this.checkSize();
  }

  private open(tag: SaxesTagPlain): void {
    this.depth++;
    const attrs = tag.attributes as Record<string, string>;
    if (this.depth > this.limits.maxXmlDepth) {
      throw this.fail(new StreamError('policy-violation', `elements nested deeper than ${this.limits.maxXmlDepth}`));
    }
    let count = 0;
    for (const _ in attrs) count++;
    if (count > this.limits.maxAttributes) {
      throw this.fail(new StreamError('policy-violation', `more than ${this.limits.maxAttributes} attributes on one element`));
    }
    if (this.depth === 1) {
      this.handler.streamStart(tag.name, attrs);
      this.unitStart = this.sax.position;
      return;
    }
    const element = new Element(tag.name, attrs);
    const parent = this.stack[this.stack.length - 1];
    if (parent) parent.cnode(element);
    this.stack.push(element);
    if (tag.isSelfClosing) return; // saxes emits closetag next
  }

  private close(): void {
    this.depth--;
    if (this.depth === 0) {
      this.ended = true;
      this.handler.streamEnd();
      return;
    }
    const element = this.stack.pop()!;
    if (this.depth === 1) {
      this.checkSize();
      this.unitStart = this.sax.position;
      element.parent = null;
      this.handler.element(element);
    }
  }

  private text(text: string): void {
    if (this.depth >= 2) {
      this.stack[this.stack.length - 1].t(text);
    } else if (this.depth === 1 && text.trim() !== '') {
      // RFC 6120 §11.7: only whitespace may stand between top-level elements.
      throw this.fail(new StreamError('bad-format', 'character data between stanzas'));
    }
  }

  /** A stanza (or the whitespace between stanzas) longer than maxStanzaSize is refused. */
  private checkSize(): void {
    if (this.sax.position - this.unitStart > this.limits.maxStanzaSize) {
      throw this.fail(new StreamError('policy-violation', `stanza larger than ${this.limits.maxStanzaSize} bytes`));
    }
  }

  private fail(error: StreamError): StreamError {
    this.failed ??= error;
    return this.failed;
  }
}
