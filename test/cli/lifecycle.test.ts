import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { generate } from 'selfsigned';
import t from 'tap';
import { metricsText } from '../helpers/http.js';
import { HellwallClient } from '../../src/client/client.js';
import { env, startServer } from '../helpers/processes.js';
import { runCli } from '../helpers/cli.js';

// Signals against the real server process: SIGHUP reloads the certificate without dropping
// connections; SIGTERM ends within the configured grace even when mail cannot be delivered.

async function certificate(cn: string): Promise<{ cert: string; key: string }> {
  const pems = await generate([{ name: 'commonName', value: cn }], {
    keyType: 'ec',
    algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
  });
  return { cert: pems.cert, key: pems.private };
}

t.test('SIGHUP swaps the certificate for new connections and keeps open ones', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-reload-'));
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  const first = await certificate('first');
  const second = await certificate('second');
  writeFileSync(certFile, first.cert);
  writeFileSync(keyFile, first.key, { mode: 0o600 });
  const server = await startServer(env(dir, { HELLWALL_PORT: '0', HELLWALL_TLS_CERT: certFile, HELLWALL_TLS_KEY: keyFile }));
  t.teardown(() => server.child.kill('SIGKILL'));
  const connect = (ca: string) => HellwallClient.connect({ host: '127.0.0.1', port: server.port, ca, connectTimeoutMs: 5000 });

  const open = await connect(first.cert);
  t.equal((await open.hello()).status, 'ok');
  t.equal(open.socket.getPeerCertificate().subject?.CN, 'first');

  writeFileSync(certFile, second.cert);
  writeFileSync(keyFile, second.key);
  server.child.kill('SIGHUP');
  await server.waitForLog('certificate reloaded');
  t.equal((await open.hello()).status, 'ok', 'the connection opened before the reload still works');
  const fresh = await connect(second.cert);
  t.equal(fresh.socket.getPeerCertificate().subject?.CN, 'second', 'new connections get the new certificate');
  t.equal((await fresh.hello()).status, 'ok');
  await t.rejects(connect(first.cert), 'and no longer the old one');

  // A broken file (here: the key of another certificate) must not take the service down.
  writeFileSync(keyFile, first.key);
  server.child.kill('SIGHUP');
  await server.waitForLog('certificate reload failed; the previous certificate stays in use');
  const after = await connect(second.cert);
  t.equal(after.socket.getPeerCertificate().subject?.CN, 'second', 'a failed reload keeps the previous certificate');
  t.equal((await after.hello()).status, 'ok');
  t.equal((await open.hello()).status, 'ok');

  const text = await metricsText(server.opsPort);
  t.match(text, /hellwall_reloads_total\{what="tls",outcome="ok"\} 1\n/);
  t.match(text, /hellwall_reloads_total\{what="tls",outcome="failed"\} 1\n/);
  for (const c of [open, fresh, after]) c.destroy();
  server.child.kill('SIGTERM');
  t.equal(await server.exited, 0);
});

t.test('SIGTERM ends within the grace even when queued mail cannot be delivered', async (t) => {
  // An SMTP server that accepts the TCP connection and then says nothing: delivery hangs until
  // nodemailer's greeting timeout (10 s), far beyond the 1 s grace configured here.
  const silent = net.createServer(() => {});
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  t.teardown(() => silent.close());
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-stop-'));
  const e = env(dataDir, {
    HELLWALL_PORT: '0',
    HELLWALL_SMTP_HOST: '127.0.0.1',
    HELLWALL_SMTP_PORT: String((silent.address() as net.AddressInfo).port),
    HELLWALL_SMTP_SECURITY: 'none',
    HELLWALL_SHUTDOWN_GRACE_MS: '1000',
  });
  const password = 'correct horse battery staple';
  t.equal((await runCli(['user', 'add', '--email', 'ops@example.com', '--phone', '+1 555 0100'], { ...e, HELLWALL_PASSWORD: password })).code, 0);
  const server = await startServer(e);
  t.teardown(() => server.child.kill('SIGKILL'));
  const client = await HellwallClient.connect({ host: '127.0.0.1', port: server.port, ca: readFileSync(path.join(dataDir, 'dev-cert.pem')), connectTimeoutMs: 5000 });
  const res = await client.requestPasscode({ email: 'ops@example.com', password, mac: '00:1a:2b:3c:4d:5e' });
  t.equal(res.status, 'ok');
  await server.waitForLog('passcode issued');
  client.destroy();

  const started = Date.now();
  server.child.kill('SIGTERM');
  t.equal(await server.exited, 0, 'exit code 0');
  const took = Date.now() - started;
  t.ok(took < 8000, `stopped in ${took} ms: bounded by the 1 s grace, not by the 10 s SMTP timeout`);
  t.ok(server.lines.some((l) => l.msg === 'shutdown: mail still queued was not delivered' && l.pending === 1), 'the undelivered mail is logged');
  t.ok(server.lines.some((l) => l.msg === 'hellwall stopped'), 'the database was closed cleanly');
});

t.test('SIGINT, like SIGTERM, answers the request in flight before the process exits 0', async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-sigint-'));
  const e = env(dataDir, { HELLWALL_PORT: '0' });
  const server = await startServer(e);
  t.teardown(() => server.child.kill('SIGKILL'));
  const client = await HellwallClient.connect({ host: '127.0.0.1', port: server.port, ca: readFileSync(path.join(dataDir, 'dev-cert.pem')), connectTimeoutMs: 5000 });
  // passcode.request verifies a password with production scrypt (tens of milliseconds): the signal
  // arrives while it is being worked on.
  const pending = client.requestPasscode({ email: 'nobody@example.com', password: 'correct horse battery staple', mac: '00:1a:2b:3c:4d:5e' });
  await new Promise((r) => setTimeout(r, 5));
  server.child.kill('SIGINT');
  t.match(await pending, { status: 'ok', expiresInSeconds: 180 }, 'the request in flight is answered');
  await client.closed;
  t.equal(await server.exited, 0, 'exit code 0');
  const at = (msg: string): number => server.lines.findIndex((l) => l.msg === msg);
  t.ok(at('shutting down') >= 0 && server.lines[at('shutting down')]!.signal === 'SIGINT');
  t.ok(at('shutting down') < at('passcode request refused'), 'the signal came while the password was being verified');
  t.ok(at('hellwall stopped') > at('passcode request refused'));
});
