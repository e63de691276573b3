// The TLS posture as a real, independent client sees it: the system `openssl s_client` against a
// real server. A refusal only counts when (1) the ClientHello really offered the weak thing (a
// permissive control server with the same certificate accepts the very same command line), (2) the
// server answered with an alert and no cipher was agreed, (3) nothing failed on the client's side,
// and (4) the server logged 'TLS handshake failed' for it.
import { spawn, spawnSync } from 'node:child_process';
import { constants } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { generate } from 'selfsigned';
import t, { type Test } from 'tap';
import { CIPHERS } from '../../src/server/tls-server.js';
import { startHarness, type Harness } from '../helpers/harness.js';

const S_CLIENT_TIMEOUT_MS = 10_000;

interface Probe {
  readonly code: number | null;
  readonly timedOut: boolean;
  readonly out: string;
  /**
   * From the SSL-Session block ("New, X, Cipher is" names the suite's first version, not the
   * session's). A TLS 1.3 session prints that block only once a ticket arrives, which an immediate
   * EOF can beat; there a TLS 1.3 suite on the "New" line is proof enough: it exists only in 1.3.
   */
  readonly protocol: string | null;
  /** The agreed suite, or null when the handshake did not finish. */
  readonly cipher: string | null;
}

function opensslVersion(): string | null {
  const r = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** Whether this openssl can put a suite in a ClientHello at all (3.0 compiles out RC4, 3DES, EXPORT). */
function canOffer(cipher: string): boolean {
  const r = spawnSync('openssl', ['ciphers', '-v', `${cipher}:@SECLEVEL=0`], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.split('\n').some((l) => l.startsWith(`${cipher} `));
}

/**
 * One `openssl s_client` run against 127.0.0.1:port. Without `script`, stdin is /dev/null: s_client
 * handshakes, sees EOF and closes. `script` writes lines once the handshake is done (e.g. "R").
 */
function sClient(port: number, args: string[], script?: string[]): Promise<Probe> {
  return new Promise((resolve, reject) => {
    const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-no_ign_eof', ...args], {
      stdio: [script ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let timedOut = false;
    let scripted = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, S_CLIENT_TIMEOUT_MS);
    const onData = (chunk: Buffer): void => {
      out += chunk.toString('utf8');
      // The session summary ends with this line: the handshake is over, commands are read now.
      if (script && !scripted && /Verify return code: \d+/.test(out)) {
        scripted = true;
        void (async () => {
          for (const line of script) {
            child.stdin?.write(`${line}\n`);
            await new Promise((r) => setTimeout(r, 500));
          }
          child.stdin?.end();
        })();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      const [, first, agreed] = /^New, ([^,]+), Cipher is (\S+)$/m.exec(out) ?? [];
      const cipher = agreed && agreed !== '(NONE)' ? agreed : null;
      const session = /^\s*Protocol\s*: (\S+)$/m.exec(out)?.[1];
      resolve({ code, timedOut, out, protocol: cipher ? (session ?? (first === 'TLSv1.3' ? first : null)) : null, cipher });
    });
  });
}

/** Errors that mean openssl itself never offered what was asked: such a run proves nothing. */
const CLIENT_SIDE = /no cipher match|no ciphers available|no protocols available|Error in cipher list|unknown option/i;
/** An alert received from the server (OpenSSL prints "sslv3/tlsv1 alert <description>" for it). */
const SERVER_ALERT = /(?:sslv3|tlsv1) alert (handshake failure|protocol version|insufficient security)/;

/** A plain Node server with the same certificate that accepts everything it can: the control. */
async function permissive(t: Test, key: Buffer, cert: Buffer, extra: tls.TlsOptions = {}): Promise<number> {
  const server = tls.createServer(
    { key, cert, minVersion: 'TLSv1', ciphers: 'ALL:eNULL:@SECLEVEL=0', ...extra },
    // Held open until the client leaves: s_client closes on its own stdin EOF, and a renegotiation
    // probe needs the connection to last.
    (socket) => socket.on('error', () => {}).resume(),
  );
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as AddressInfo).port;
}

function handshakeFailures(h: Harness) {
  return h.logs.find({ msg: 'TLS handshake failed' });
}

async function waitForFailureLog(h: Harness, before: number): Promise<Array<Record<string, unknown>>> {
  for (let i = 0; i < 100 && handshakeFailures(h).length <= before; i++) await new Promise((r) => setTimeout(r, 20));
  return handshakeFailures(h).slice(before);
}

/** Asserts the control accepts `args` and the real server refuses them, with a log line matching `reason`. */
async function assertRefused(t: Test, h: Harness, controlPort: number, args: string[], reason: RegExp): Promise<void> {
  const control = await sClient(controlPort, args);
  t.notOk(control.timedOut, 'control: s_client finished');
  t.notMatch(control.out, CLIENT_SIDE, 'control: openssl could build this ClientHello');
  t.ok(control.cipher, `control: a permissive server accepts this offer (got ${control.protocol} ${control.cipher}), so the offer is real`);

  const before = handshakeFailures(h).length;
  const probe = await sClient(h.port, args);
  t.notOk(probe.timedOut, 's_client finished');
  t.notMatch(probe.out, CLIENT_SIDE, 'nothing failed on the client side');
  t.equal(probe.cipher, null, 'no cipher was agreed ("Cipher is (NONE)")');
  t.not(probe.code, 0, 's_client exits non-zero');
  t.match(probe.out, SERVER_ALERT, 'the server sent a handshake-failure or protocol-version alert');
  const logged = await waitForFailureLog(h, before);
  t.equal(logged.length, 1, "the server logged one 'TLS handshake failed'");
  t.match(logged[0]?.err, reason, 'with the reason');
}

async function assertAccepted(t: Test, port: number, args: string[], protocol: string, cipher: string): Promise<Probe> {
  const probe = await sClient(port, args);
  t.notOk(probe.timedOut, 's_client finished');
  t.equal(probe.protocol, protocol, `${protocol} negotiated`);
  t.equal(probe.cipher, cipher, `${cipher} agreed`);
  t.equal(probe.code, 0, 's_client exits 0');
  t.match(probe.out, /^Compression: NONE$/m, 'no TLS compression');
  return probe;
}

const version = opensslVersion();
if (!version) {
  t.fail('`openssl` is not on PATH: these tests drive the system `openssl s_client` (Debian: apt-get install openssl)');
} else {
  t.comment(`using ${version}`);

  t.test('against the development (ECDSA) certificate', async (t) => {
    const h = await startHarness(t);
    const control = await permissive(t, h.tls.key, h.tls.cert);

    // OpenSSL 3.0 clients refuse TLS 1.0/1.1 at security level 2 before sending anything; level 0
    // makes the ClientHello go out so the refusal is the server's.
    for (const [flag, name] of [['-tls1', 'TLS 1.0'], ['-tls1_1', 'TLS 1.1']] as const) {
      await t.test(`${name} is refused`, (t) => assertRefused(t, h, control, [flag, '-cipher', 'DEFAULT@SECLEVEL=0'], /unsupported protocol/));
    }

    const weak: Array<[string, string]> = [
      ['ECDHE-ECDSA-AES128-SHA', 'CBC with a SHA-1 MAC'],
      ['ECDHE-ECDSA-AES256-SHA384', 'CBC (forward-secret, but not AEAD)'],
      ['ECDHE-ECDSA-NULL-SHA', 'eNULL: no encryption'],
      ['AECDH-AES128-SHA', 'aNULL: anonymous, no authentication'],
    ];
    for (const [cipher, why] of weak) {
      await t.test(`TLS 1.2 with ${cipher} (${why}) is refused`, (t) =>
        assertRefused(t, h, control, ['-tls1_2', '-cipher', `${cipher}:@SECLEVEL=0`], /no shared cipher/));
    }

    for (const [cipher, why] of [['DES-CBC3-SHA', '3DES (Sweet32)'], ['RC4-SHA', 'RC4'], ['EXP-RC4-MD5', 'EXPORT']]) {
      await t.test(`TLS 1.2 with ${cipher} (${why}) is refused`, { skip: canOffer(cipher!) ? false : `this openssl (${version.split(' (')[0]}) cannot offer ${cipher}: compiled out of OpenSSL 3.0` }, (t) =>
        assertRefused(t, h, control, ['-tls1_2', '-cipher', `${cipher}:@SECLEVEL=0`], /no shared cipher/));
    }

    await t.test('TLS 1.2 with ECDHE-ECDSA-AES128-GCM-SHA256 is accepted', (t) =>
      assertAccepted(t, h.port, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256'], 'TLSv1.2', 'ECDHE-ECDSA-AES128-GCM-SHA256'));
    await t.test('TLS 1.3 is accepted, with the server\'s first suite', (t) =>
      assertAccepted(t, h.port, ['-tls1_3'], 'TLSv1.3', 'TLS_AES_128_GCM_SHA256'));

    await t.test('the server\'s suite order wins over the client\'s (honorCipherOrder)', async (t) => {
      const tls12 = ['-tls1_2', '-cipher', 'ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256'];
      const tls13 = ['-tls1_3', '-ciphersuites', 'TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256'];
      // The control (same suites, the client's order) shows the client really prefers CHACHA20.
      const clientOrder = await permissive(t, h.tls.key, h.tls.cert, { minVersion: 'TLSv1.2', ciphers: CIPHERS, honorCipherOrder: false });
      t.equal((await sClient(clientOrder, tls12)).cipher, 'ECDHE-ECDSA-CHACHA20-POLY1305', 'control, TLS 1.2: the client\'s first choice');
      t.equal((await sClient(clientOrder, tls13)).cipher, 'TLS_CHACHA20_POLY1305_SHA256', 'control, TLS 1.3: the client\'s first choice');
      await assertAccepted(t, h.port, tls12, 'TLSv1.2', 'ECDHE-ECDSA-AES128-GCM-SHA256');
      await assertAccepted(t, h.port, tls13, 'TLSv1.3', 'TLS_AES_128_GCM_SHA256');
    });

    // Renegotiation is a second full handshake on demand (CPU cost for the server, and the
    // historical injection bugs); this protocol has no use for it. Node allows client-initiated
    // renegotiation (capped at tls.CLIENT_RENEG_LIMIT=3 per 10 min) unless the context sets
    // SSL_OP_NO_RENEGOTIATION, as src/server/tls-server.ts does (at start and on every reload).
    const renegotiate = (port: number) => sClient(port, ['-tls1_2'], ['R']);
    const renegotiated = (probe: Probe): boolean | null => {
      const after = probe.out.split('RENEGOTIATING')[1];
      if (probe.protocol !== 'TLSv1.2' || after === undefined) return null; // the probe did not run
      // A second handshake verifies the certificate again; a refusal is a no_renegotiation alert.
      if (/depth=0/.test(after)) return true;
      return /no renegotiation/.test(after) ? false : null;
    };

    await t.test('the renegotiation probe tells acceptance from refusal', async (t) => {
      const allows = await permissive(t, h.tls.key, h.tls.cert, { minVersion: 'TLSv1.2', ciphers: CIPHERS });
      const refuses = await permissive(t, h.tls.key, h.tls.cert, {
        minVersion: 'TLSv1.2',
        ciphers: CIPHERS,
        secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
      });
      t.equal(renegotiated(await renegotiate(allows)), true, 'Node defaults: the second handshake completes');
      t.equal(renegotiated(await renegotiate(refuses)), false, 'SSL_OP_NO_RENEGOTIATION: refused with a no_renegotiation alert');
    });

    await t.test('TLS 1.2 client-initiated renegotiation is refused', async (t) => {
      const probe = await renegotiate(h.port);
      t.notOk(probe.timedOut, 's_client finished');
      t.not(renegotiated(probe), null, 'the probe ran (a first TLS 1.2 handshake, then "R")');
      t.equal(renegotiated(probe), false, 'no second handshake: refused with a no_renegotiation alert');
    });

    t.test('what this openssl cannot test', (t) => {
      t.comment('SSLv2/SSLv3: not built into OpenSSL 3.0 (no -ssl3 option); Node cannot serve them either');
      t.comment('offering TLS compression: this openssl is built without zlib (`openssl list -disabled` lists ZLIB), so -comp offers nothing; only "Compression: NONE" on accepted sessions is checked');
      t.end();
    });
  });

  t.test('against an RSA certificate', async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-rsa-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const pems = await generate([{ name: 'commonName', value: 'hellwall.test' }], { keyType: 'rsa', keySize: 2048, algorithm: 'sha256' });
    const certFile = path.join(dir, 'cert.pem');
    const keyFile = path.join(dir, 'key.pem');
    writeFileSync(certFile, pems.cert);
    writeFileSync(keyFile, pems.private);
    chmodSync(keyFile, 0o600);
    const h = await startHarness(t, { config: { tls: { certFile, keyFile } } });
    const control = await permissive(t, h.tls.key, h.tls.cert);

    const weak: Array<[string, string]> = [
      ['AES128-SHA', 'static RSA key exchange (no forward secrecy), CBC'],
      ['AES128-GCM-SHA256', 'static RSA key exchange: AEAD but no forward secrecy'],
      ['ECDHE-RSA-AES128-SHA', 'CBC with a SHA-1 MAC'],
      ['ECDHE-RSA-AES128-SHA256', 'CBC'],
      ['NULL-SHA256', 'eNULL: no encryption'],
      ['CAMELLIA128-SHA', 'static RSA, CBC, outside the list'],
    ];
    for (const [cipher, why] of weak) {
      await t.test(`TLS 1.2 with ${cipher} (${why}) is refused`, (t) =>
        assertRefused(t, h, control, ['-tls1_2', '-cipher', `${cipher}:@SECLEVEL=0`], /no shared cipher/));
    }
    await t.test('TLS 1.2 with ECDHE-RSA-AES256-GCM-SHA384 is accepted', (t) =>
      assertAccepted(t, h.port, ['-tls1_2', '-cipher', 'ECDHE-RSA-AES256-GCM-SHA384'], 'TLSv1.2', 'ECDHE-RSA-AES256-GCM-SHA384'));
  });
}
