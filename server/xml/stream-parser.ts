import { Element } from 'ltx';
import type { SaxesTagPlain } from 'saxes';
import { StreamError } from '../errors';
import type { Limits } from '../config/types';
import { fastAttributes, newSaxesParser } from './saxes';

export type ParserLimits = Pick<Limits, 'maxStanzaSize' | 'maxXmlDepth' | 'maxAttributes'>;

export interface StreamParserHandler {
  /** The stream header (depth 1 element) opened: its name and attributes. */
  streamStart(name: string, attrs: Record<string, string>): void;
  /** A complete top-level element (a stanza or a nonza) at depth 2. */
  element(element: Element): void;
  /** The peer closed the stream element. */
  streamEnd(): void;
}

/** The depth and attribute limits for an element opening at `depth`: the policy-violation, or undefined. */
export function elementLimitViolation(depth: number, attrs: Record<string, string>, limits: ParserLimits): StreamError | undefined {
  if (depth > limits.maxXmlDepth) return new StreamError('policy-violation', `elements nested deeper than ${limits.maxXmlDepth}`);
  let count = 0;
  for (const _ in attrs) count++;
  if (count > limits.maxAttributes) return new StreamError('policy-violation', `more than ${limits.maxAttributes} attributes on one element`);
  return undefined;
}

/**
 * Incremental parser for one XML stream (RFC 6120 §4), built on the strict, non-validating saxes
 * parser and producing ltx elements. Every violation throws a StreamError for the caller to send:
 * malformed XML is `not-well-formed`; comments, processing instructions and DTDs are
 * `restricted-xml` (RFC 6120 §11.1: "MUST NOT contain ... comments, processing instructions,
 * internal or external DTD subsets, internal or external entity references"); bytes that are not
 * UTF-8 are `unsupported-encoding` (RFC 6120 §11.6); limits are `policy-violation`. A new parser
 * is made for each stream restart (after STARTTLS and SASL).
 */
export class StreamParser {
  private readonly sax = newSaxesParser({ xmlns: false, position: true });
  // fatal: invalid UTF-8 throws instead of becoming U+FFFD; stream: a character may span chunks.
  private readonly decoder = new TextDecoder('utf-8', { fatal: true });
  private readonly stack: Element[] = [];
  /** Parser position (characters) where the current unit began: the header, a top-level element, or a gap. */
  private unitStart = 0;
  /** UTF-8 bytes of the current unit that arrived in earlier chunks. */
  private unitBytes = 0;
  /**
   * The chunk being parsed and the position of its first character, to count bytes. Positions
   * index the concatenation of all chunks; saxes' own position is only exact inside its events.
   */
  private chunk = '';
  private chunkStart = 0;
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
    sax.on('xmldecl', (decl) => {
      if (decl.encoding !== undefined && decl.encoding.toLowerCase() !== 'utf-8') {
        throw this.fail(new StreamError('unsupported-encoding', 'the stream must be UTF-8'));
      }
    });
    // A top-level element begins: saxes has read "<", the name and one more character.
    sax.on('opentagstart', (tag) => {
      fastAttributes(tag);
      if (this.depth !== 1) return;
      const start = sax.position - tag.name.length - 2;
      this.checkSize(this.unitBytes + this.bytesSince(this.unitStart, start));
      this.startUnit(start);
      // Part of "<name" may have arrived in an earlier chunk, which bytesSince no longer sees.
      if (start < this.chunkStart) this.unitBytes = Buffer.byteLength(`<${tag.name}`.slice(0, this.chunkStart - start));
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
    let text: string;
    try {
      text = typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    } catch {
      throw this.fail(new StreamError('unsupported-encoding', 'the stream is not valid UTF-8'));
    }
    if (text.length === 0) return;
    this.chunkStart += this.chunk.length;
    this.chunk = text;
    this.sax.write(text);
    // The unit still open at the end of the chunk carries its bytes so far into the next one.
    this.unitBytes += this.bytesSince(this.unitStart, this.chunkStart + text.length);
    this.checkSize(this.unitBytes);
  }

  private open(tag: SaxesTagPlain): void {
    this.depth++;
    const attrs = tag.attributes as Record<string, string>;
    const violation = elementLimitViolation(this.depth, attrs, this.limits);
    if (violation) throw this.fail(violation);
    if (this.depth === 1) {
      this.checkSize(this.unitBytes + this.bytesSince(this.unitStart, this.sax.position));
      this.handler.streamStart(tag.name, attrs);
      this.startUnit(this.sax.position);
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
      this.checkSize(this.unitBytes + this.bytesSince(this.unitStart, this.sax.position));
      this.startUnit(this.sax.position);
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

  private startUnit(position: number): void {
    this.unitStart = position;
    this.unitBytes = 0;
  }

  /** UTF-8 bytes of the current chunk from parser position `from` (or the chunk's start) to `to`. */
  private bytesSince(from: number, to: number): number {
    const start = Math.max(from, this.chunkStart) - this.chunkStart;
    return Buffer.byteLength(this.chunk.slice(start, to - this.chunkStart));
  }

  /** A stanza, the header or the whitespace between stanzas longer than maxStanzaSize bytes is refused. */
  private checkSize(bytes: number): void {
    if (bytes > this.limits.maxStanzaSize) {
      throw this.fail(new StreamError('policy-violation', `stanza larger than ${this.limits.maxStanzaSize} bytes`));
    }
  }

  private fail(error: StreamError): StreamError {
    this.failed ??= error;
    return this.failed;
  }
}
