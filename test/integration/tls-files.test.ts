import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generate } from 'selfsigned';
import t from 'tap';
import { HellwallClient } from '../../src/client/client.js';
import { startHarness } from '../helpers/harness.js';

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
    { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' },
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
