import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { generate } from 'selfsigned';

/** A certificate and its key, PEM, as a server's --tls-cert/--tls-key (or Prosody's, ejabberd's) take them. */
export interface IssuedCertificate {
  cert: string;
  key: string;
}

/**
 * A certificate authority made for one test, which every server in it trusts (ours with
 * --s2s-ca-file, Prosody with its cafile, ejabberd with s2s_cafile): certificates it issues are
 * valid, so servers prove their domains with them (SASL EXTERNAL) rather than with dialback.
 */
export class TestCa {
  private constructor(readonly cert: string, private readonly key: string) {}

  static async create(): Promise<TestCa> {
    const ca = await generate([{ name: 'commonName', value: 'XMPP interop test CA' }], {
      keyType: 'ec',
      algorithm: 'sha256',
      notBeforeDate: new Date(Date.now() - 3600_000),
      notAfterDate: new Date(Date.now() + 7 * 86400_000),
      extensions: [
        { name: 'basicConstraints', cA: true, critical: true },
        { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
      ],
    });
    return new TestCa(ca.cert, ca.private);
  }

  /** A server certificate for `domain` and its subdomains (components: muc., pubsub.), for TLS server and client use. */
  async issue(domain: string): Promise<IssuedCertificate> {
    const issued = await generate([{ name: 'commonName', value: domain }], {
      keyType: 'ec',
      algorithm: 'sha256',
      notBeforeDate: new Date(Date.now() - 3600_000),
      notAfterDate: new Date(Date.now() + 7 * 86400_000),
      ca: { cert: this.cert, key: this.key },
      extensions: [
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
        { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
        { name: 'subjectAltName', altNames: [{ type: 2, value: domain }, { type: 2, value: `*.${domain}` }] },
      ],
    });
    return { cert: issued.cert, key: issued.private };
  }

  /** Writes the CA certificate, and `issued` when given, into `dir`; returns their paths. */
  write(dir: string, issued?: IssuedCertificate): { ca: string; cert: string; key: string } {
    const files = { ca: path.join(dir, 'test-ca.pem'), cert: path.join(dir, 'issued-cert.pem'), key: path.join(dir, 'issued-key.pem') };
    writeFileSync(files.ca, this.cert);
    if (issued) {
      writeFileSync(files.cert, issued.cert);
      writeFileSync(files.key, issued.key, { mode: 0o600 });
    }
    return files;
  }
}
