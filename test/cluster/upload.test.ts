import { randomBytes } from 'node:crypto';
import { startCluster } from '../helpers/cluster';
import { forEachDatabase } from '../helpers/databases';
import { httpRequest } from '../helpers/http';
import { xml } from '../helpers/server';

const UPLOAD = 'urn:xmpp:http:upload:0';

// XEP-0363 in a cluster: files live in the shared database, so a file PUT through one node's web
// port is served by any other node's, byte for byte.
forEachDatabase('a file uploaded through node 1 is downloaded through node 2', async (t, dbUri) => {
  const cluster = await startCluster(t, { nodes: 2, dbUri, strategy: 'online-users-caching', args: ['--comp-name-1=upload', '--comp-class-1=upload'] });
  await cluster.addUser('alice');
  const alice = await cluster.login(0, 'alice');
  const data = randomBytes(1_500_000);
  const reply = await alice.iqCaller.request(xml('iq', { type: 'get', to: 'upload.localhost' }, xml('request', { xmlns: UPLOAD, filename: 'big.bin', size: String(data.length), 'content-type': 'application/octet-stream' })));
  const slot = reply.getChild('slot', UPLOAD)!;
  const put = new URL(slot.getChild('put')!.attrs.url);
  const path = put.pathname;
  t.equal(put.port, String(cluster.nodes[0].httpPort), 'the URL names the web port of the node asked');
  const stored = await httpRequest(`https://127.0.0.1:${cluster.nodes[0].httpPort}${path}`, { method: 'PUT', body: data, headers: { 'Content-Type': 'application/octet-stream' } });
  t.equal(stored.status, 201);
  const got = await httpRequest(`https://127.0.0.1:${cluster.nodes[1].httpPort}${path}`);
  t.equal(got.status, 200);
  t.ok(got.bytes.equals(data), 'byte for byte, through the other node');
  t.equal(got.headers['content-length'], String(data.length));
}, ['sqlite']);
