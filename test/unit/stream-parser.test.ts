import t from 'tap';
import type { Element } from 'ltx';
import { StreamError } from '../../server/errors';
import { EVENTS, SaxesParser } from 'saxes';
import { newSaxesParser } from '../../server/xml/saxes';
import { StreamParser, type ParserLimits } from '../../server/xml/stream-parser';

type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

const LIMITS: ParserLimits = { maxStanzaSize: 10000, maxXmlDepth: 8, maxAttributes: 8 };
const HEADER = "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

/** What a parser told its handler, and the stream error it threw (if any). */
interface Outcome {
  header?: { name: string; attrs: Record<string, string> };
  elements: Element[];
  ended: boolean;
  error?: StreamError;
  /** How many write() calls had been made when the error was thrown. */
  failedAtWrite?: number;
}

function newParser(limits: ParserLimits = LIMITS): { parser: StreamParser; outcome: Outcome } {
  const outcome: Outcome = { elements: [], ended: false };
  const parser = new StreamParser(limits, {
    streamStart: (name, attrs) => { outcome.header = { name, attrs }; },
    element: (element) => { outcome.elements.push(element); },
    streamEnd: () => { outcome.ended = true; },
  });
  return { parser, outcome };
}

/** Feeds `chunks` in order, stopping at the first StreamError (anything else is rethrown). */
function feed(chunks: (Buffer | string)[], limits: ParserLimits = LIMITS): Outcome {
  const { parser, outcome } = newParser(limits);
  let writes = 0;
  for (const chunk of chunks) {
    writes++;
    try {
      parser.write(chunk);
    } catch (err) {
      if (!(err instanceof StreamError)) throw err;
      outcome.error = err;
      outcome.failedAtWrite = writes;
      break;
    }
  }
  return outcome;
}

/** The input as one Buffer, as single bytes, and in chunks of 7 bytes (splitting characters). */
function chunkings(input: string): [string, Buffer[]][] {
  const bytes = Buffer.from(input, 'utf8');
  const single = [...bytes].map((b) => Buffer.from([b]));
  const sevens: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += 7) sevens.push(bytes.subarray(i, i + 7));
  return [['in one chunk', [bytes]], ['byte by byte', single], ['in 7-byte chunks', sevens]];
}

/** Asserts that `input`, however it is chunked, ends with the stream error `condition`. */
function expectError(t: TapTest, input: string, condition: string, limits: ParserLimits = LIMITS): void {
  for (const [how, chunks] of chunkings(input)) {
    const outcome = feed(chunks, limits);
    t.equal(outcome.error?.condition, condition, `${condition} (${how})`);
  }
}

const stanza = (body: string) => `<message to='bob@localhost' type='chat' id='m1'><body>${body}</body></message>`;

t.test('a well-formed stream gives the same header, elements and end however it is chunked', async (t) => {
  const input = `${HEADER}\n  <presence/>${stanza('h\u00e9llo \u20ac \u{1F600} &amp;&lt;&gt;&quot;&apos;&#65;&#x42;')}\n<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq> </stream:stream>`;
  for (const [how, chunks] of chunkings(input)) {
    const outcome = feed(chunks);
    t.equal(outcome.error, undefined, `no error (${how})`);
    t.equal(outcome.header?.name, 'stream:stream', `header name (${how})`);
    t.same(outcome.header?.attrs, {
      to: 'localhost', version: '1.0', xmlns: 'jabber:client', 'xmlns:stream': 'http://etherx.jabber.org/streams',
    }, `header attributes (${how})`);
    t.same(outcome.elements.map((e) => e.name), ['presence', 'message', 'iq'], `three elements (${how})`);
    t.equal(outcome.elements[1].getChildText('body'), 'h\u00e9llo \u20ac \u{1F600} &<>"\'AB', `text decoded (${how})`);
    t.equal(outcome.elements[2].getChild('ping')?.attrs.xmlns, 'urn:xmpp:ping', `nested child (${how})`);
    t.equal(outcome.elements[1].parent, null, `a stanza has no parent (${how})`);
    t.ok(outcome.ended, `stream end reported (${how})`);
  }
});

t.test('multi-byte UTF-8 characters split across chunks decode intact', async (t) => {
  const text = '\u00e9\u20ac\u{1F600}\u4e2d';
  const bytes = Buffer.from(`${HEADER}${stanza(text)}`, 'utf8');
  const bodyAt = bytes.indexOf(Buffer.from(text, 'utf8'));
  // Cut inside the 2-byte é, the 3-byte €, the 4-byte emoji (twice) and the 3-byte 中.
  const cuts = [bodyAt + 1, bodyAt + 3, bodyAt + 5, bodyAt + 7, bodyAt + 8, bodyAt + 10, bodyAt + 12];
  const chunks: Buffer[] = [];
  let from = 0;
  for (const cut of cuts) {
    chunks.push(bytes.subarray(from, cut));
    from = cut;
  }
  chunks.push(bytes.subarray(from));
  const outcome = feed(chunks);
  t.equal(outcome.error, undefined);
  t.equal(outcome.elements[0]?.getChildText('body'), text);
});

t.test('bytes that are not UTF-8 are unsupported-encoding (RFC 6120 §11.6)', async (t) => {
  const latin1 = Buffer.concat([Buffer.from(`${HEADER}<message><body>`), Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x21]), Buffer.from('</body></message>')]);
  const outcome = feed([latin1]);
  t.equal(outcome.error?.condition, 'unsupported-encoding');
  t.equal(outcome.elements.length, 0, 'the stanza is not delivered with a replacement character');
  expectError(t, `<?xml version='1.0' encoding='ISO-8859-1'?>${HEADER.slice(21)}`, 'unsupported-encoding');
  t.equal(feed([`<?xml version='1.0' encoding='utf-8'?>${HEADER.slice(21)}<presence/>`]).elements.length, 1, 'encoding UTF-8 is fine');
});

t.test('maxStanzaSize: a stanza within the limit passes, a larger one is policy-violation', async (t) => {
  const limit = LIMITS.maxStanzaSize;
  const fits = stanza('x'.repeat(limit - stanza('').length));
  t.equal(Buffer.byteLength(fits), limit);
  for (const [how, chunks] of chunkings(`${HEADER}${fits}${fits}`)) {
    const outcome = feed(chunks);
    t.equal(outcome.error, undefined, `exactly the limit passes (${how})`);
    t.equal(outcome.elements.length, 2, `both delivered (${how})`);
  }
  expectError(t, `${HEADER}${stanza('x'.repeat(limit - stanza('').length + 1))}`, 'policy-violation');
});

t.test('maxStanzaSize counts bytes on the wire, not characters', async (t) => {
  // 4000 euro signs are 4000 JavaScript characters but 12000 bytes.
  const outcome = feed([`${HEADER}${stanza('\u20ac'.repeat(4000))}`]);
  t.equal(outcome.error?.condition, 'policy-violation');
  t.equal(outcome.elements.length, 0);
  t.equal(feed([`${HEADER}${stanza('\u20ac'.repeat(3000))}`]).elements.length, 1, '9000 bytes of euro signs pass');
});

t.test('the byte count is exact however multi-byte characters and CRLF fall across chunks', async (t) => {
  const limit = LIMITS.maxStanzaSize;
  const room = limit - stanza('').length;
  const mixed = (bytes: number) => '\u20ac\r\n\u{1F600}'.repeat(Math.floor(bytes / 9)) + 'x'.repeat(bytes % 9);
  t.equal(Buffer.byteLength(stanza(mixed(room))), limit);
  for (const [how, chunks] of chunkings(`${HEADER}\r\n${stanza(mixed(room))}\r\n${stanza(mixed(room))}`)) {
    const outcome = feed(chunks);
    t.equal(outcome.error, undefined, `exactly the limit passes (${how})`);
    t.equal(outcome.elements.length, 2, `both delivered (${how})`);
  }
  expectError(t, `${HEADER}\r\n${stanza(mixed(room + 1))}`, 'policy-violation');
});

t.test('an oversized stanza is refused while it arrives, before it ends', async (t) => {
  const chunks = [HEADER, "<message to='bob@localhost'><body>"];
  for (let i = 0; i < 100; i++) chunks.push('y'.repeat(1000));
  const outcome = feed(chunks);
  t.equal(outcome.error?.condition, 'policy-violation');
  t.ok(outcome.failedAtWrite! <= 13, `refused after about 10 KB (write ${outcome.failedAtWrite} of ${chunks.length})`);
});

t.test('maxStanzaSize also bounds the stream header, whitespace between stanzas and text before the header', async (t) => {
  expectError(t, `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='${'z'.repeat(20000)}'>`, 'policy-violation');
  expectError(t, `${HEADER}<presence/>${' '.repeat(20000)}<presence/>`, 'policy-violation');
  expectError(t, `${' '.repeat(20000)}${HEADER.slice(21)}`, 'policy-violation');
  t.equal(feed([HEADER, ...Array.from({ length: 30 }, () => `${' '.repeat(500)}<presence/>`)]).elements.length, 30,
    'many small stanzas add up to more than the limit without error');
});

t.test('maxXmlDepth: the stream element is depth 1; one level more than the limit is policy-violation', async (t) => {
  const nest = (levels: number) => `${'<a>'.repeat(levels)}${'</a>'.repeat(levels)}`;
  // Depth 8 = stream + message + 6 levels.
  const atLimit = `${HEADER}<message>${nest(6)}</message>`;
  for (const [how, chunks] of chunkings(atLimit)) {
    const outcome = feed(chunks);
    t.equal(outcome.error, undefined, `depth 8 passes (${how})`);
    t.equal(outcome.elements.length, 1, `delivered (${how})`);
  }
  expectError(t, `${HEADER}<message>${nest(7)}</message>`, 'policy-violation');
  // Without closing tags: refused as soon as the ninth level opens.
  expectError(t, `${HEADER}<message>${'<a>'.repeat(1000)}`, 'policy-violation');
});

t.test('maxAttributes: up to the limit passes, one more is policy-violation, on stanzas and on the header', async (t) => {
  const attrs = (n: number) => Array.from({ length: n }, (_, i) => ` a${i}='v'`).join('');
  t.equal(feed([`${HEADER}<presence${attrs(8)}/>`]).elements[0]?.attrs.a7, 'v', '8 attributes pass');
  expectError(t, `${HEADER}<presence${attrs(9)}/>`, 'policy-violation');
  expectError(t, `${HEADER}<message><body${attrs(9)}>x</body></message>`, 'policy-violation');
  expectError(t, `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'${attrs(7)}>`, 'policy-violation');
});

t.test('comments, processing instructions and DTDs are restricted-xml (RFC 6120 §11.1)', async (t) => {
  expectError(t, `${HEADER}<!-- hello --><presence/>`, 'restricted-xml');
  expectError(t, `${HEADER}<message><!-- hello --></message>`, 'restricted-xml');
  expectError(t, `<!-- hello -->${HEADER}`, 'restricted-xml');
  expectError(t, `${HEADER}<?php echo 1 ?>`, 'restricted-xml');
  expectError(t, `${HEADER}<message><?target data?></message>`, 'restricted-xml');
  expectError(t, `<?xml version='1.0'?><!DOCTYPE stream:stream>${HEADER.slice(21)}`, 'restricted-xml');
  expectError(t, `<!DOCTYPE x SYSTEM 'file:///etc/passwd'>${HEADER}`, 'restricted-xml');
  const comment = feed([`${HEADER}<presence/><!-- x --><presence/>`]);
  t.equal(comment.elements.length, 1, 'nothing after the comment is delivered');
});

t.test('entity references other than the five predefined and numeric ones are not-well-formed', async (t) => {
  expectError(t, `${HEADER}${stanza('&nbsp;')}`, 'not-well-formed');
  expectError(t, `${HEADER}<message to='&foo;'/>`, 'not-well-formed');
  expectError(t, `${HEADER}${stanza('&#0;')}`, 'not-well-formed');
  expectError(t, `${HEADER}${stanza('&#xD800;')}`, 'not-well-formed');
  expectError(t, `${HEADER}${stanza('a & b; c')}`, 'not-well-formed');
  const ok = feed([`${HEADER}<message to='a&amp;b'>${stanza('&lt;&#x263A;&#9731;')}</message>`]);
  t.equal(ok.error, undefined);
  t.equal(ok.elements[0].attrs.to, 'a&b');
});

t.test('billion laughs: the DTD is refused before any entity is defined or expanded', async (t) => {
  const lol = [
    "<?xml version='1.0'?>",
    '<!DOCTYPE lolz [',
    '<!ENTITY lol "lol">',
    ...Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i === 0 ? '' : i};`.repeat(10)}">`),
    ']>',
    HEADER.slice(21),
    stanza('&lol9;'),
  ].join('\n');
  for (const [how, chunks] of chunkings(lol)) {
    const started = Date.now();
    const outcome = feed(chunks);
    t.equal(outcome.error?.condition, 'restricted-xml', `restricted-xml (${how})`);
    t.equal(outcome.header, undefined, `no stream was opened (${how})`);
    t.equal(outcome.elements.length, 0, `nothing delivered (${how})`);
    t.ok(Date.now() - started < 2000, `no expansion work (${how})`);
  }
  // The same reference without a DTD is an undefined entity.
  expectError(t, `${HEADER}${stanza('&lol9;')}`, 'not-well-formed');
});

t.test('malformed XML is not-well-formed', async (t) => {
  expectError(t, `${HEADER}<message><body>hi</message></body>`, 'not-well-formed');
  expectError(t, `${HEADER}<message></presence>`, 'not-well-formed');
  expectError(t, `${HEADER}<message to='a' to='b'/>`, 'not-well-formed');
  expectError(t, `${HEADER}<message to=bob/>`, 'not-well-formed');
  expectError(t, `${HEADER}<1message/>`, 'not-well-formed');
  expectError(t, `${HEADER}<message>\u0001</message>`, 'not-well-formed');
  expectError(t, `${HEADER}<message>\uFFFE</message>`, 'not-well-formed');
  expectError(t, `${HEADER}</stream:streamx>`, 'not-well-formed');
  expectError(t, `GET / HTTP/1.1\r\nHost: localhost\r\n\r\n${HEADER}`, 'not-well-formed');
  expectError(t, `\u0016\u0003\u0001\u0002\u0000\u0001\u0000`, 'not-well-formed');
});

t.test('character data between stanzas is bad-format (RFC 6120 §11.7); whitespace is fine', async (t) => {
  expectError(t, `${HEADER}<presence/>hello<presence/>`, 'bad-format');
  expectError(t, `${HEADER}hello</stream:stream>`, 'bad-format');
  expectError(t, `${HEADER}<![CDATA[x]]>`, 'bad-format');
  const ws = feed([`${HEADER} \n\t\r\n<presence/>  \n  <presence/>\n`]);
  t.equal(ws.error, undefined);
  t.equal(ws.elements.length, 2);
});

t.test('after an error every later write throws the same error and delivers nothing', async (t) => {
  const { parser, outcome } = newParser();
  const attempt = (input: string): unknown => {
    try {
      parser.write(input);
    } catch (err) {
      return err;
    }
    return undefined;
  };
  const first = attempt(`${HEADER}<a><b></a>`);
  t.type(first, StreamError);
  t.equal((first as StreamError).condition, 'not-well-formed');
  t.equal(attempt('<presence/>'), first, 'the same error again');
  t.equal(outcome.elements.length, 0);
});

t.test('the closing stream tag reports the end once; later input is ignored', async (t) => {
  const { parser, outcome } = newParser();
  parser.write(`${HEADER}<presence/>`);
  t.notOk(outcome.ended);
  parser.write('</stream:');
  t.notOk(outcome.ended, 'not before the tag is complete');
  parser.write('stream>');
  t.ok(outcome.ended);
  parser.write('<presence/> garbage <');
  t.equal(outcome.elements.length, 1, 'nothing after the end is delivered');
});

t.test('the saxes parsers have a slot for every handler, so setting handlers adds no property', async (t) => {
  const handlers = (parser: SaxesParser<{ xmlns: false; position: boolean }>) => {
    const before = Object.keys(parser).length;
    for (const event of EVENTS) parser.on(event, () => undefined);
    return Object.keys(parser).length - before;
  };
  t.equal(handlers(newSaxesParser({ xmlns: false, position: true })), 0, 'with positions (streams)');
  t.equal(handlers(newSaxesParser({ xmlns: false, position: false })), 0, 'without (WebSocket and BOSH)');
  t.equal(handlers(new SaxesParser({ xmlns: false, position: true })), EVENTS.length, 'a plain saxes parser gains one property per event');
});

t.test('attributes named like inherited properties are ordinary attributes; a repeated one is not-well-formed', async (t) => {
  const ok = feed([`${HEADER}<message constructor='c' toString='s' hasOwnProperty='h' __proto__='p' to='a@localhost'/>`]);
  t.notOk(ok.error);
  const attrs = ok.elements[0].attrs;
  t.equal(attrs.constructor, 'c');
  t.equal(attrs.toString, 's');
  t.equal(attrs.hasOwnProperty, 'h');
  t.equal(attrs.to, 'a@localhost');
  t.equal(Object.getPrototypeOf(attrs), Object.prototype, 'an attribute named __proto__ sets no prototype');
  t.equal(({} as Record<string, unknown>).p, undefined, 'nor pollutes Object.prototype');
  for (const name of ['to', 'constructor', '__proto__']) {
    const repeated = feed([`${HEADER}<message ${name}='a' ${name}='b'/>`]);
    t.equal(repeated.error?.condition, 'not-well-formed', `${name} twice`);
  }
});
