import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generate } from 'selfsigned';
import t from 'tap';
import { buildApp } from '../../src/app.js';
import { HellwallClient } from '../../src/client/client.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { DEV_KEY_FILE, keyModeIsSafe, loadTlsMaterial } from '../../src/tls/tls-files.js';
import { startHarness } from '../helpers/harness.js';
import { LogSink } from '../helpers/log-sink.js';

/** A certificate and key in a fresh directory; modes are set with chmod so the umask cannot interfere. */
async function certFiles(t: { teardown(fn: () => unknown): void }, keyMode: number, certMode = 0o644) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-certs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const pems = await generate([{ name: 'commonName', value: 'hellwall.test' }], { keyType: 'ec', algorithm: 'sha256' });
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  writeFileSync(certFile, pems.cert);
  writeFileSync(keyFile, pems.private);
  chmodSync(certFile, certMode);
  chmodSync(keyFile, keyMode);
  return { dir, certFile, keyFile, pems };
}

function configFor(dataDir: string, certFile: string, keyFile: string) {
  return loadConfig({}, { dataDir, port: 0, ops: { port: 0 }, tls: { certFile, keyFile } }, undefined);
}

t.test('configured certificate files are served and no development certificate is made', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-certs-'));
  const pems = await generate([{ name: 'commonName', value: 'hellwall.test' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'hellwall.test' }, { type: 7, ip: '127.0.0.1' }] }],
  });
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  writeFileSync(certFile, pems.cert);
  writeFileSync(keyFile, pems.private, { mode: 0o600 });
  const h = await startHarness(t, { config: { tls: { certFile, keyFile } } });

  const client = await h.connect({ ca: pems.cert, servername: 'hellwall.test' });
  t.equal((await client.hello()).status, 'ok', 'a client trusting the configured CA connects');
  t.equal(client.socket.getPeerCertificate().subject?.CN, 'hellwall.test', 'and sees the configured certificate');
  t.equal(client.socket.getProtocol(), 'TLSv1.3', 'TLS 1.3 is negotiated');
  t.notOk(existsSync(path.join(h.dataDir, 'dev-cert.pem')), 'no development certificate was generated');
  t.equal(h.logs.find({ msg: 'generated a development TLS certificate' }).length, 0);

  await t.rejects(
    HellwallClient.connect({ host: '127.0.0.1', port: h.port, servername: 'hellwall.test' }),
    { name: 'ConnectFailure', reason: 'untrusted', cause: { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' } },
    'a client that does not trust it is refused by its own verification',
  );
});

t.test('TLS 1.2 clients are served with a forward-secret AEAD suite', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect({});
  t.equal(client.socket.getProtocol(), 'TLSv1.3');
  const { connect } = await import('node:tls');
  const socket = connect({ host: '127.0.0.1', port: h.port, ca: h.ca, maxVersion: 'TLSv1.2' });
  await new Promise((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  t.equal(socket.getProtocol(), 'TLSv1.2');
  t.match(socket.getCipher().name, /^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/);
  socket.destroy();
});

t.test('a configured key file readable by others (0644) is refused at start, naming the file and the fix', async (t) => {
  const { dir, certFile, keyFile } = await certFiles(t, 0o644);
  const logs = new LogSink();
  const config = configFor(dir, certFile, keyFile);
  await t.rejects(loadTlsMaterial(config, createLogger('trace', logs)), {
    name: 'ConfigError',
    message: new RegExp(`TLS key file ${keyFile} is readable or writable by group or others \\(mode 0644\\).*chmod 600 ${keyFile}`),
  });
  t.equal(statSync(keyFile).mode & 0o777, 0o644, 'a configured key is never chmod-ed behind the operator\'s back');

  // The whole start path: listen() rejects and nothing is listening.
  const app = buildApp({ config, log: createLogger('trace', logs) });
  t.teardown(() => app.close(100));
  await t.rejects(app.listen(), { message: /chmod 600/ }, 'the service does not start');
  t.equal(logs.find({ msg: 'hellwall listening' }).length, 0);
});

t.test('group- or world-writable and group-readable non-root keys are refused; 0600 and 0400 are served', async (t) => {
  for (const mode of [0o600, 0o400]) {
    const { dir, certFile, keyFile, pems } = await certFiles(t, mode);
    const tls = await loadTlsMaterial(configFor(dir, certFile, keyFile), createLogger('trace', new LogSink()));
    t.equal(tls.key.toString(), pems.private, `mode ${mode.toString(8)} is accepted and the key read`);
  }
  for (const mode of [0o604, 0o660, 0o620, 0o602, 0o666, 0o610]) {
    const { dir, certFile, keyFile } = await certFiles(t, mode);
    await t.rejects(loadTlsMaterial(configFor(dir, certFile, keyFile), createLogger('trace', new LogSink())), { name: 'ConfigError' }, `mode ${mode.toString(8)} is refused`);
  }
});

t.test('the group-read exception holds only for a root-owned key (the /etc/ssl/private, root:ssl-cert 0640 layout)', async (t) => {
  t.ok(keyModeIsSafe(0o100640, 0), 'root-owned 0640');
  t.ok(keyModeIsSafe(0o100440, 0), 'root-owned 0440');
  t.notOk(keyModeIsSafe(0o100640, 1000), 'user-owned 0640');
  t.notOk(keyModeIsSafe(0o100660, 0), 'root-owned, group-writable');
  t.notOk(keyModeIsSafe(0o100644, 0), 'root-owned, world-readable');
  t.notOk(keyModeIsSafe(0o100641, 0), 'root-owned, world-executable bit');
  if (process.getuid?.() !== 0) {
    t.comment('not root: the on-disk ownership cases need chown and are covered by the rule checks above');
    return;
  }
  const rootOwned = await certFiles(t, 0o640);
  await t.resolves(loadTlsMaterial(configFor(rootOwned.dir, rootOwned.certFile, rootOwned.keyFile), createLogger('trace', new LogSink())), 'root-owned 0640 file is served');
  const userOwned = await certFiles(t, 0o640);
  chownSync(userOwned.keyFile, 65534, 65534);
  await t.rejects(loadTlsMaterial(configFor(userOwned.dir, userOwned.certFile, userOwned.keyFile), createLogger('trace', new LogSink())), { name: 'ConfigError' }, 'nobody-owned 0640 file is refused');
});

t.test('a symlinked key is judged by the file it points to', async (t) => {
  const { dir, certFile, keyFile } = await certFiles(t, 0o644);
  const link = path.join(dir, 'link.pem');
  symlinkSync(keyFile, link);
  await t.rejects(loadTlsMaterial(configFor(dir, certFile, link), createLogger('trace', new LogSink())), {
    message: new RegExp(`TLS key file ${link} \\(-> ${keyFile}\\) is readable`),
  }, 'a link (itself 0777) to a 0644 key is refused, and the message names both');
  chmodSync(keyFile, 0o600);
  await t.resolves(loadTlsMaterial(configFor(dir, certFile, link), createLogger('trace', new LogSink())), 'a link to a 0600 key is served');
});

t.test('a world-writable certificate file starts with a warning', async (t) => {
  const { certFile, keyFile, pems } = await certFiles(t, 0o600, 0o666);
  const h = await startHarness(t, { config: { tls: { certFile, keyFile } } });
  const warnings = h.logs.find({ msg: `TLS certificate file is writable by others; fix: chmod o-w ${certFile}` });
  t.equal(warnings.length, 1, 'one warning');
  t.equal(warnings[0]?.level, 40, 'at warn level');
  t.equal(warnings[0]?.mode, '0666');
  t.same(h.tls.cert.toString(), pems.cert, 'and the certificate is served');

  const quiet = await certFiles(t, 0o600, 0o664);
  const logs = new LogSink();
  await loadTlsMaterial(configFor(quiet.dir, quiet.certFile, quiet.keyFile), createLogger('trace', logs));
  t.equal(logs.lines.filter((l) => l.level >= 40).length, 0, 'a 0664 certificate (not world-writable) gives no warning');
});

t.test('a loose development key is tightened to 0600 with a warning', async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-test-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const config = loadConfig({}, { dataDir, port: 0, ops: { port: 0 } }, undefined);
  const keyFile = path.join(dataDir, DEV_KEY_FILE);
  const first = await loadTlsMaterial(config, createLogger('trace', new LogSink()));
  t.equal(statSync(keyFile).mode & 0o777, 0o600, 'generated 0600');

  chmodSync(keyFile, 0o644);
  const logs = new LogSink();
  const second = await loadTlsMaterial(config, createLogger('trace', logs));
  t.equal(statSync(keyFile).mode & 0o777, 0o600, 'tightened back to 0600');
  t.match(logs.find({ msg: 'development TLS key is readable by group or others; tightening to 0600' }), [{ level: 40, file: keyFile, mode: '0644' }]);
  t.same(second.key, first.key, 'the same key is kept (not regenerated)');
});
