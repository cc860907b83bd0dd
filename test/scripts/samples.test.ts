import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { loadOrCreateCertificate } from '../../server/tls';

const ROOT = path.resolve(__dirname, '../..');
const HAPROXY = ['/usr/sbin/haproxy', '/usr/bin/haproxy'].find((p) => existsSync(p));

function run(file: string, args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(file, args, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, output: stdout + stderr }));
  });
}

// The shipped HAProxy sample must pass HAProxy's own check (the certificate path is the one thing
// an operator must change, so the test points it at a throwaway certificate).
t.test('etc/haproxy.cfg.sample passes `haproxy -c`', { skip: HAPROXY ? false : 'haproxy is not installed (Debian package haproxy)' }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'haproxy-sample-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { cert, key } = await loadOrCreateCertificate({ hosts: ['chat.example.com'], dataDir: dir });
  writeFileSync(path.join(dir, 'chat.pem'), `${cert.trim()}\n${key.trim()}\n`);
  const sample = readFileSync(path.join(ROOT, 'etc/haproxy.cfg.sample'), 'utf8');
  t.match(sample, /\/etc\/haproxy\/certs\/chat\.example\.com\.pem/);
  const config = path.join(dir, 'haproxy.cfg');
  writeFileSync(config, sample.replace('/etc/haproxy/certs/chat.example.com.pem', path.join(dir, 'chat.pem')));
  const { code, output } = await run(HAPROXY!, ['-c', '-f', config]);
  t.equal(code, 0, output);
  t.match(output, /Configuration file is valid/);
  t.match(sample, /option httpchk GET \/health\/ready/, 'balancers check readiness');
});

// The systemd unit sample must pass systemd's own check, and start what this project builds.
const SYSTEMD_ANALYZE = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));
t.test('etc/xmpp-cluster-server.service.sample passes `systemd-analyze verify`', { skip: SYSTEMD_ANALYZE ? false : 'systemd-analyze is not installed' }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'systemd-sample-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sample = readFileSync(path.join(ROOT, 'etc/xmpp-cluster-server.service.sample'), 'utf8');
  const unit = path.join(dir, 'xmpp-cluster-server.service');
  writeFileSync(unit, sample);
  const { code, output } = await run(SYSTEMD_ANALYZE!, ['verify', unit]);
  t.equal(code, 0, output);
  t.equal(output.trim(), '', 'no warnings');
  t.match(sample, /^ExecStart=\/usr\/bin\/node dist\/server\/main\.js --config etc\/init\.properties$/m);
  t.ok(existsSync(path.join(ROOT, 'dist/server/main.js')), 'which npm run build writes');
  t.match(sample, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m, 'reload is SIGHUP');
});
