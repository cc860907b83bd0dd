import { Element, parse } from 'ltx';
import t from 'tap';
import { serialize } from '../../server/xml/serialize';

t.test('serialize writes what ltx\'s toString writes, escaping included', async (t) => {
  const parsed = [
    '<message to="r@localhost/x" type="chat" id="m1"><body>hello</body></message>',
    '<message from="a@b/c" xmlns="jabber:client"><body>1 &lt; 2 &amp;&amp; 3 &gt; 2, "quoted" and \'single\'</body><x xmlns="y"/></message>',
    '<iq type="set" id="a&amp;b&quot;c&apos;d&lt;e&gt;"><query xmlns="jabber:iq:roster"><item jid="x@y" name="K&amp;R"><group>Friends</group></item></query></iq>',
    '<presence><status>ünïcødé 😀 text</status><priority>5</priority></presence>',
    '<a><b><c><d/></c></b>text between<e f=""/></a>',
  ].map((xml) => parse(xml));
  const built = new Element('message', { to: 'r@localhost', id: 7 as unknown as string, skipped: undefined as unknown as string, gone: null as unknown as string })
    .c('body').t('<script>&"\'').up()
    .c('empty').up()
    .c('n').t(42 as unknown as string).root();
  built.children.push(null as unknown as Element);
  for (const element of [...parsed, built]) t.equal(serialize(element), element.toString());
});
