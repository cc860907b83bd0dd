import { SaxesParser, type SaxesStartTagPlain } from 'saxes';

/** The properties saxes 6 keeps its event handlers in (its EVENT_NAME_TO_HANDLER_NAME). */
type Slots = Record<
  'xmldeclHandler' | 'textHandler' | 'piHandler' | 'doctypeHandler' | 'commentHandler' | 'openTagStartHandler' | 'attributeHandler'
  | 'openTagHandler' | 'closeTagHandler' | 'cdataHandler' | 'errorHandler' | 'endHandler' | 'readyHandler',
  unknown
>;

/**
 * A saxes parser that stays a fast V8 object once its handlers are set.
 *
 * saxes' constructor leaves the handler properties out, and `on()` adds each with a computed key
 * (`this[name] = handler`). V8 turns an object that gains that many properties through computed
 * keys into a hash table ("dictionary mode"). Then every field saxes reads while it parses (its
 * state, buffer, position) is a hash lookup, and each parser holds 3 KB more heap.
 *
 * Here the slots are declared by name first, in one order for every parser, so `on()` only
 * overwrites existing properties. Parsing a 250-byte message stanza took 22 to 24 µs before and
 * takes 8 to 10 µs now. If a later saxes named its slots differently, `on()` would add them again
 * and parsing would be as slow as before, never wrong; stream-parser.test.ts checks that `on()`
 * adds no property.
 */
export function newSaxesParser<O extends { xmlns: false; position: boolean }>(options: O): SaxesParser<O> {
  const parser = new SaxesParser(options);
  const slots = parser as unknown as Slots;
  slots.xmldeclHandler = undefined;
  slots.textHandler = undefined;
  slots.piHandler = undefined;
  slots.doctypeHandler = undefined;
  slots.commentHandler = undefined;
  slots.openTagStartHandler = undefined;
  slots.attributeHandler = undefined;
  slots.openTagHandler = undefined;
  slots.closeTagHandler = undefined;
  slots.cdataHandler = undefined;
  slots.errorHandler = undefined;
  slots.endHandler = undefined;
  slots.readyHandler = undefined;
  return parser;
}

/** The prototype of the attributes objects: empty, with no prototype of its own. */
const NO_INHERITED_ATTRIBUTES = Object.create(null) as object;

/**
 * Gives a tag saxes has just opened (its `opentagstart` event, before it reads the attributes)
 * an attributes object that V8 keeps fast.
 *
 * saxes makes each one with `Object.create(null)`, so that no attribute name meets an inherited
 * property (`constructor`, `__proto__`). V8 makes such an object a hash table from the start:
 * filling it, counting its attributes and copying it into the ltx element cost more than the
 * rest of the parse (Object.assign from it alone was 28% of parsing a message stanza). An object
 * whose prototype is an empty object without a prototype inherits nothing either, and V8 keeps it
 * fast: a message stanza parses in 4 µs instead of 8 to 10.
 */
export function fastAttributes(tag: SaxesStartTagPlain): void {
  tag.attributes = Object.create(NO_INHERITED_ATTRIBUTES) as Record<string, string>;
}
