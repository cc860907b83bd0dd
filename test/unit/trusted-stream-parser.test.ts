import t from 'tap';
import type { Element } from 'ltx';
import { StreamError } from '../../server/errors';
import type { ParserLimits } from '../../server/xml/stream-parser';
import { TrustedStreamParser } from '../../server/xml/trusted-stream-parser';

/** The condition of the StreamError `fn` throws; undefined when it throws none. */
function conditionThrown(fn: () => void): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as StreamError).condition;
  }
  return undefined;
}

const LIMITS: ParserLimits = { maxStanzaSize: 2000, maxXmlDepth: 6, maxAttributes: 6 };
const HEADER = "<cluster xmlns='urn:xmpp-cluster:link' from='a' to='b' version='2.0'>";

interface Outcome {
  header?: { name: string; attrs: Record<string, string> };
  elements: Element[];
  ended: boolean;
  error?: StreamError;
}

/** Feeds `input` split into `size`-byte chunks (splitting characters too); stops at the first StreamError. */
function feed(input: string, size: number, limits: ParserLimits = LIMITS): Outcome {
  const outcome: Outcome = { elements: [], ended: false };
  const parser = new TrustedStreamParser(limits, {
    streamStart: (name, attrs) => { outcome.header = { name, attrs }; },
    element: (element) => { outcome.elements.push(element); },
    streamEnd: () => { outcome.ended = true; },
  });
  const bytes = Buffer.from(input, 'utf8');
  for (let i = 0; i < bytes.length; i += size) {
    try {
      parser.write(bytes.subarray(i, i + size));
    } catch (err) {
      if (!(err instanceof StreamError)) throw err;
      outcome.error = err;
      break;
    }
  }
  return outcome;
}

const SIZES = [1, 7, 1 << 20];

t.test('elements come out whole, with text, entities and non-ASCII intact, however the bytes are chunked', async (t) => {
  const body = "Grüße & <tags> in 'quotes' — 😀";
  const input = `${HEADER}\n  <m k='route' to='b&amp;b@x/r'><message xmlns='jabber:client' type='chat'><body>Grüße &amp; &lt;tags&gt; in &apos;quotes&apos; — 😀</body><x xmlns='y'/></message></m>\n<hb/><![CDATA[]]></cluster>`;
  for (const size of SIZES) {
    const out = feed(input, size);
    t.equal(out.error, undefined, `no error in ${size}-byte chunks`);
    t.same(out.header, { name: 'cluster', attrs: { xmlns: 'urn:xmpp-cluster:link', from: 'a', to: 'b', version: '2.0' } });
    t.equal(out.elements.length, 2);
    const [m, hb] = out.elements;
    t.equal(m.attrs.to, 'b&b@x/r');
    t.equal(m.getChild('message')?.getChildText('body'), body);
    t.ok(m.getChild('message')?.getChild('x', 'y'), 'a self-closing child');
    t.equal(m.parent, null, 'detached from the stream root');
    t.equal(hb.name, 'hb');
    t.ok(out.ended, 'the closing tag ends the stream');
  }
});

t.test('bad input is a stream error, never an exception of another kind', async (t) => {
  const cases: [string, string, string][] = [
    ['a mismatched end tag', `${HEADER}<m><a></b></m>`, 'not-well-formed'],
    ['an unknown entity', `${HEADER}<m>&nope;</m>`, 'not-well-formed'],
    ['a forbidden character reference', `${HEADER}<m>&#0;</m>`, 'not-well-formed'],
    ['text between elements', `${HEADER}<a/>stray text<b/>`, 'bad-format'],
    ['too deep', `${HEADER}<a><b><c><d><e><f>x</f></e></d></c></b></a>`, 'policy-violation'],
    ['too many attributes', `${HEADER}<a a='1' b='2' c='3' d='4' e='5' f='6' g='7'/>`, 'policy-violation'],
  ];
  for (const [what, input, condition] of cases) {
    for (const size of SIZES) t.equal(feed(input, size).error?.condition, condition, `${what} (${size}-byte chunks)`);
  }
  // The size limit bounds what is buffered: an element still open past the limit.
  for (const size of [1, 7, 1000]) {
    t.equal(feed(`${HEADER}<m>${'x'.repeat(5000)}</m>`, size).error?.condition, 'policy-violation', `an element larger than the limit (${size}-byte chunks)`);
  }
  const invalid = Buffer.concat([Buffer.from(`${HEADER}<m>`), Buffer.from([0xc3, 0x28]), Buffer.from('</m>')]);
  const parser = new TrustedStreamParser(LIMITS, { streamStart() {}, element() {}, streamEnd() {} });
  t.equal(conditionThrown(() => parser.write(invalid)), 'unsupported-encoding', 'bytes that are not UTF-8');
  t.equal(conditionThrown(() => parser.write(Buffer.from('<ok/>'))), 'unsupported-encoding', 'and every write after the first error throws it again');
});

t.test('many small elements add up to more than the limit without error; one open element may not', async (t) => {
  const many = `${HEADER}${"<a k='v'>some text</a>".repeat(1000)}`;
  const out = feed(many, 4096);
  t.equal(out.error, undefined);
  t.equal(out.elements.length, 1000);
  const growing = feed(`${HEADER}<m>${'y'.repeat(1500)}`, 1000);
  t.equal(growing.error, undefined, 'an open element within the limit is fine');
  const parser = new TrustedStreamParser(LIMITS, { streamStart() {}, element() {}, streamEnd() {} });
  parser.write(Buffer.from(`${HEADER}<m>`));
  const endless = () => {
    for (let i = 0; i < 10; i++) parser.write(Buffer.from('z'.repeat(500)));
  };
  t.equal(conditionThrown(endless), 'policy-violation', 'an element that never ends is refused once it passes the limit');
});

t.test('the limits can be widened, e.g. once a peer has authenticated', async (t) => {
  const seen: string[] = [];
  const parser = new TrustedStreamParser({ maxStanzaSize: 100, maxXmlDepth: 2, maxAttributes: 6 }, {
    streamStart() {},
    element: (element) => { seen.push(element.name); },
    streamEnd() {},
  });
  parser.write(Buffer.from(`${HEADER}<auth proof='x'/>`));
  parser.limits = LIMITS;
  parser.write(Buffer.from(`<m><message><body>${'x'.repeat(500)}</body></message></m>`));
  t.same(seen, ['auth', 'm']);
});

t.test('an exception from a handler passes through unchanged', async (t) => {
  const boom = new Error('handler failed');
  const parser = new TrustedStreamParser(LIMITS, { streamStart() {}, element() { throw boom; }, streamEnd() {} });
  t.throws(() => parser.write(Buffer.from(`${HEADER}<m/>`)), boom);
});
