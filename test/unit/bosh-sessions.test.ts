import { parse, type Element } from 'ltx';
import t from 'tap';
import { silentLogger } from '../../server/log';
import { BoshSessions } from '../../server/transports/bosh';
import { nodeOfId as sidOwner } from '../../server/node-id';

const HTTPBIND = 'http://jabber.org/protocol/httpbind';
const info = { secure: false, remoteAddress: '127.0.0.1:1', host: 'localhost', proxied: false };
const sidOf = (node: string) => `AAAAAAAAAAAAAAAAAAAAAA.${Buffer.from(node).toString('base64url')}`;

function sessions(): BoshSessions {
  return new BoshSessions({
    node: 'node-a',
    hosts: new Set(['localhost']),
    inactivity: 60,
    logger: silentLogger(),
    onTransport: () => {
      throw new Error('no session is created in these tests');
    },
  });
}

t.test('a sid names the node that owns it', async (t) => {
  t.equal(sidOwner(sidOf('node-b.example')), 'node-b.example');
  t.equal(sidOwner('no-dot-here'), undefined);
  t.equal(sidOwner('.bm9kZQ'), undefined, 'nothing before the dot');
});

t.test('a request for a sid owned by another node goes to the cluster forwarder', async (t) => {
  const bosh = sessions();
  const asked: string[] = [];
  bosh.setForwarder(async (owner, body: Element) => {
    asked.push(`${owner} ${body.attrs.rid}`);
    return owner === 'node-b' ? { status: 200, contentType: 'text/xml; charset=utf-8', body: `<body xmlns='${HTTPBIND}'/>` } : undefined;
  });
  const forwarded = await bosh.handle(parse(`<body xmlns='${HTTPBIND}' rid='7' sid='${sidOf('node-b')}'/>`) as Element, info);
  t.equal(forwarded.body, `<body xmlns='${HTTPBIND}'/>`, 'the owner answered');
  const unreachable = await bosh.handle(parse(`<body xmlns='${HTTPBIND}' rid='8' sid='${sidOf('node-c')}'/>`) as Element, info);
  t.match(unreachable.body, /condition='item-not-found'/, 'an owner that cannot be reached is item-not-found');
  const ours = await bosh.handle(parse(`<body xmlns='${HTTPBIND}' rid='9' sid='${sidOf('node-a')}'/>`) as Element, info);
  t.match(ours.body, /condition='item-not-found'/, 'an unknown sid of this node is never forwarded');
  t.same(asked, ['node-b 7', 'node-c 8']);
});
