import t from 'tap';
import { parse } from 'ltx';
import { capsOf, verificationString, verifyCaps } from '../../server/sm/caps';

// The examples of XEP-0115 §5.2 and §5.3, with the ver strings the XEP gives for them.
const SIMPLE = `<query xmlns='http://jabber.org/protocol/disco#info' node='http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0='>
  <identity category='client' name='Exodus 0.9.1' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
</query>`;

const COMPLEX = `<query xmlns='http://jabber.org/protocol/disco#info' node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>
  <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
  <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
  <x xmlns='jabber:x:data' type='result'>
    <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
    <field var='ip_version' type='text-multi'><value>ipv4</value><value>ipv6</value></field>
    <field var='os'><value>Mac</value></field>
    <field var='os_version'><value>10.5.1</value></field>
    <field var='software'><value>Psi</value></field>
    <field var='software_version'><value>0.11</value></field>
  </x>
</query>`;

t.test('XEP-0115 §5.2: the simple example hashes to its ver', async (t) => {
  t.equal(
    verificationString(parse(SIMPLE)),
    'client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<',
  );
  t.ok(verifyCaps(parse(SIMPLE), 'sha-1', 'QgayPKawpkPSDYmwT/WM94uAlu0='));
});

t.test('XEP-0115 §5.3: identities in several languages and an extended form hash to their ver', async (t) => {
  t.ok(verifyCaps(parse(COMPLEX), 'sha-1', 'q07IKJEyjvHSyhy//CH0CxmKi8w='));
});

t.test('a result that does not match, or is ill-formed, or uses a weak hash, is not trusted', async (t) => {
  t.notOk(verifyCaps(parse(SIMPLE), 'sha-1', 'q07IKJEyjvHSyhy//CH0CxmKi8w='), 'another ver');
  t.notOk(verifyCaps(parse(SIMPLE), 'md5', 'QgayPKawpkPSDYmwT/WM94uAlu0='), 'md5 is not accepted');
  const duplicate = SIMPLE.replace("<feature var='http://jabber.org/protocol/muc'/>", "<feature var='http://jabber.org/protocol/muc'/><feature var='http://jabber.org/protocol/muc'/>");
  t.equal(verificationString(parse(duplicate)), undefined, 'a duplicate feature makes it ill-formed (§5.4)');
});

t.test('caps are read from presence only with hash, node and ver', async (t) => {
  t.same(capsOf(parse("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/></presence>")), { hash: 'sha-1', node: 'n', ver: 'v' });
  t.equal(capsOf(parse("<presence><c xmlns='http://jabber.org/protocol/caps' node='n' ver='v' ext='a b'/></presence>")), undefined, 'legacy caps without hash');
  t.equal(capsOf(parse('<presence/>')), undefined);
});
