import http from 'node:http';
import https from 'node:https';

export interface HttpReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The body as received. */
  bytes: Buffer;
}

const agents = {
  http: new http.Agent({ keepAlive: true }),
  https: new https.Agent({ keepAlive: true, rejectUnauthorized: false }),
};

type RequestOptions = { method?: string; body?: string | Buffer; headers?: Record<string, string> };

/**
 * One HTTP(S) request over real sockets (self-signed certificates accepted). Like browsers and
 * Node's documentation advise, an idempotent request that fails with ECONNRESET on a reused
 * keep-alive socket (the server closed it as idle while the request went out) is sent again.
 */
export async function httpRequest(url: string, opts: RequestOptions = {}): Promise<HttpReply> {
  try {
    return await requestOnce(url, opts);
  } catch (err) {
    const idempotent = ['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS'].includes(opts.method ?? 'GET');
    if (!idempotent || !(err as { reusedSocket?: boolean }).reusedSocket || (err as NodeJS.ErrnoException).code !== 'ECONNRESET') throw err;
    return requestOnce(url, opts);
  }
}

function requestOnce(url: string, opts: RequestOptions): Promise<HttpReply> {
  const target = new URL(url);
  const secure = target.protocol === 'https:';
  const send = secure ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const req = send(target, { method: opts.method ?? 'GET', headers: opts.headers, agent: secure ? agents.https : agents.http }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const bytes = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text: bytes.toString('utf8'), bytes });
      });
      res.on('error', reject);
    });
    req.on('error', (err) => reject(Object.assign(err, { reusedSocket: req.reusedSocket })));
    req.end(opts.body);
  });
}

/** GET url and parse the JSON body. */
export async function getJson(url: string, headers?: Record<string, string>): Promise<{ status: number; json: any; headers: http.IncomingHttpHeaders }> {
  const reply = await httpRequest(url, { headers });
  return { status: reply.status, json: JSON.parse(reply.text), headers: reply.headers };
}
