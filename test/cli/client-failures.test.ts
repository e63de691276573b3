import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { runCli } from '../helpers/cli.js';
import { bannerTcp, certificate, closedPort, httpServer, mutedTlsServer, silentTcp, tlsServer } from '../helpers/bad-peers.js';
import { ALICE, startHarness } from '../helpers/harness.js';

// Every way `hellwall client` can fail to reach or trust the server: one line on stderr saying
// what and what to do, exit 3, nothing on stdout, no stack trace; a refusal by the server is exit 1
// and a wrong command line exit 2. Real sockets on the other end (test/helpers/bad-peers.ts).

const DAY = 86_400_000;
const STACK = /\n\s+at |Error:/;

t.test('could not reach or trust the server: exit 3, one line each', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-fail-'));
  const file = (name: string, content: string): string => {
    writeFileSync(path.join(dir, name), content);
    return path.join(dir, name);
  };
  const local = await certificate({ dns: ['localhost'], ips: ['127.0.0.1'] });
  const other = await certificate({ dns: ['other.example'] });
  const expired = await certificate({ ips: ['127.0.0.1'], notBefore: new Date(Date.now() - 3 * DAY), notAfter: new Date(Date.now() - DAY) });
  const localCa = file('local.pem', local.cert);
  const cases: Array<{ name: string; args: string[]; says: RegExp }> = [
    { name: 'a port nobody listens on', args: ['--port', String(await closedPort()), '--ca', localCa], says: /nothing listens on 127\.0\.0\.1:\d+: is the server running\?/ },
    { name: 'an unknown host', args: ['--host', 'no-such-host.invalid', '--port', '7443', '--ca', localCa], says: /unknown host "no-such-host\.invalid": check --host/ },
    { name: 'plain TCP that says nothing', args: ['--port', String(await silentTcp(t)), '--ca', localCa, '--timeout', '0.5'], says: /accepted the connection but did not start TLS within 0\.5 s/ },
    { name: 'plain TCP with a banner', args: ['--port', String(await bannerTcp(t)), '--ca', localCa], says: /does not speak TLS/ },
    { name: 'an HTTP server', args: ['--port', String(await httpServer(t)), '--ca', localCa], says: /does not speak TLS \(an HTTP or other plain-TCP service\?\): check --port/ },
    { name: 'a certificate we do not trust', args: ['--port', String(await tlsServer(t, local)), '--ca', file('other.pem', other.cert)], says: /is not signed by the CA we trust \(.*other\.pem\): pass --ca/ },
    { name: 'a CA file that is not PEM', args: ['--port', String(await tlsServer(t, local)), '--ca', file('junk.pem', 'junk\n')], says: /junk\.pem is not a PEM certificate/ },
    { name: 'a CA file that does not exist', args: ['--port', '7443', '--ca', path.join(dir, 'missing.pem')], says: /missing\.pem does not exist: pass --ca/ },
    { name: 'a certificate for another name', args: ['--port', String(await tlsServer(t, other)), '--ca', file('other2.pem', other.cert)], says: /is not for "127\.0\.0\.1".*--servername/ },
    { name: 'an expired certificate', args: ['--port', String(await tlsServer(t, expired)), '--ca', file('expired.pem', expired.cert)], says: /has expired/ },
    { name: 'a server that does not answer', args: ['--port', String(await mutedTlsServer(t, local)), '--ca', localCa, '--timeout', '0.5'], says: /did not answer within 0\.5 s/ },
  ];
  const env = { HOME: dir, HELLWALL_DATA_DIR: dir, HELLWALL_TOKEN_FILE: path.join(dir, 'token') };
  for (const c of cases) {
    // No --host: the configured one (127.0.0.1 by default), as for a local server.
    const r = await runCli(['client', 'hello', ...c.args], env);
    t.equal(r.code, 3, `${c.name}: exit 3 (${r.stderr.trim()})`);
    t.match(r.stderr, c.says, c.name);
    t.match(r.stderr, /^hellwall: [^\n]+\n$/, `${c.name}: one line`);
    t.notMatch(r.stderr, STACK, `${c.name}: no stack trace`);
    t.equal(r.stdout, '', `${c.name}: nothing on stdout`);
  }
});

t.test('usage mistakes are exit 2; refusals by the server exit 1', async (t) => {
  const h = await startHarness(t);
  // The client sends its clock (clientTime); the fake one must agree with it.
  h.clock.now = Date.now();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-fail-'));
  const env = { HOME: dir, HELLWALL_DATA_DIR: h.dataDir, HELLWALL_PORT: String(h.port), HELLWALL_TOKEN_FILE: path.join(dir, 'token') };
  for (const port of ['0', '70000', 'seventy']) {
    const r = await runCli(['client', 'hello', '--port', port], env);
    t.equal(r.code, 2, `--port ${port}`);
    t.match(r.stderr, /--port must be a TCP port \(1 to 65535\)/);
  }
  const timeout = await runCli(['client', 'hello', '--timeout', 'soon'], env);
  t.equal(timeout.code, 2);
  const zero = await runCli(['client', 'hello'], { ...env, HELLWALL_PORT: '0' });
  t.equal(zero.code, 2, 'a configured port 0 cannot be guessed');
  t.match(zero.stderr, /pass --port/);

  const unauthorized = await runCli(['client', 'check', '--token', 'Awfer_hellwall_' + 'A'.repeat(43), '--mac', '00:1a:2b:3c:4d:5e'], env);
  t.equal(unauthorized.code, 1, 'unauthorized: refused by the server');
  t.equal(JSON.parse(unauthorized.stdout).status, 'unauthorized');
  const badLogin = await runCli(['client', 'login', '--email', ALICE.email, '--phone', ALICE.phone, '--mac', '00:1a:2b:3c:4d:5e', '--passcode', 'ABC123'], { ...env, HELLWALL_PASSWORD: ALICE.password });
  t.equal(badLogin.code, 1);
  t.match(badLogin.stderr, /^hellwall: the server refused: authentication failed \(E_AUTH_FAILED\)\n$/);
  t.notMatch(badLogin.stderr, STACK);
});

t.test('--debug adds nothing to a failure the client explains; a stack only for the unexpected', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-fail-'));
  const r = await runCli(['client', 'hello', '--port', String(await closedPort()), '--ca', path.join(dir, 'missing.pem'), '--debug'], { HOME: dir, HELLWALL_DATA_DIR: dir });
  t.equal(r.code, 3);
  t.match(r.stderr, /^hellwall: [^\n]+\n$/);
});
