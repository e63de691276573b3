import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { HellwallClient } from '../../src/client/client.js';
import { ConnectFailure } from '../../src/client/failures.js';
import { readCa } from '../../src/client/trust.js';
import { bannerTcp, certificate, closedPort, httpServer, mutedTlsServer, silentTcp, tlsServer } from '../helpers/bad-peers.js';

// Every way HellwallClient.connect can fail rejects with a ConnectFailure whose reason names it and
// whose message is one line saying what to do; Node's own error stays as `cause`.

const DAY = 86_400_000;

async function failure(p: Promise<unknown>): Promise<ConnectFailure> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ConnectFailure) return err;
    throw err;
  }
  throw new Error('it connected');
}

t.test('each failure to connect has a reason and one line of advice', async (t) => {
  const local = await certificate({ dns: ['localhost'], ips: ['127.0.0.1'] });
  const other = await certificate({ dns: ['other.example'] });
  const expired = await certificate({ ips: ['127.0.0.1'], notBefore: new Date(Date.now() - 3 * DAY), notAfter: new Date(Date.now() - DAY) });
  const cases: Array<{ name: string; reason: string; advice: RegExp; port: number; ca?: string; host?: string; timeout?: number }> = [
    { name: 'nobody listens', reason: 'refused', advice: /nothing listens on 127\.0\.0\.1:\d+: is the server running/, port: await closedPort() },
    { name: 'plain TCP that says nothing', reason: 'timeout', advice: /accepted the connection but did not start TLS within 0\.5 s/, port: await silentTcp(t), timeout: 500 },
    { name: 'plain TCP with a banner', reason: 'not-tls', advice: /does not speak TLS.*check --port/, port: await bannerTcp(t) },
    { name: 'an HTTP server', reason: 'not-tls', advice: /does not speak TLS \(an HTTP/, port: await httpServer(t) },
    { name: 'a certificate we do not trust', reason: 'untrusted', advice: /not signed by the CA we trust.*--ca/, port: await tlsServer(t, local), ca: other.cert },
    { name: 'a certificate for another name', reason: 'name-mismatch', advice: /is not for "127\.0\.0\.1".*--servername/, port: await tlsServer(t, other), ca: other.cert },
    { name: 'an expired certificate', reason: 'expired', advice: /has expired/, port: await tlsServer(t, expired), ca: expired.cert },
    { name: 'an unknown host', reason: 'unknown-host', advice: /unknown host "no-such-host\.invalid": check --host/, port: 7443, host: 'no-such-host.invalid' },
    { name: 'port 0', reason: 'bad-port', advice: /port 0 is not a TCP port/, port: 0 },
    { name: 'port 70000', reason: 'bad-port', advice: /port 70000 is not a TCP port/, port: 70000 },
  ];
  for (const c of cases) {
    const err = await failure(HellwallClient.connect({ host: c.host ?? '127.0.0.1', port: c.port, ca: c.ca ?? local.cert, connectTimeoutMs: c.timeout ?? 5000 }));
    t.equal(err.reason, c.reason, `${c.name}: ${err.message}`);
    t.match(err.message, c.advice, c.name);
    t.notOk(err.message.includes('\n'), `${c.name}: one line`);
  }
});

t.test('a server that stops answering fails the request after --timeout', async (t) => {
  const pem = await certificate({ ips: ['127.0.0.1'] });
  const port = await mutedTlsServer(t, pem);
  const client = await HellwallClient.connect({ host: '127.0.0.1', port, ca: pem.cert, requestTimeoutMs: 300 });
  const err = await failure(client.command('hello', {}));
  t.equal(err.reason, 'timeout');
  t.match(err.message, /did not answer within 0\.3 s/);
});

t.test('a server that hangs up mid-request is "closed"', async (t) => {
  const pem = await certificate({ ips: ['127.0.0.1'] });
  const port = await tlsServer(t, pem);
  const client = await HellwallClient.connect({ host: '127.0.0.1', port, ca: pem.cert });
  const err = await failure(client.command('hello', {}));
  t.equal(err.reason, 'closed');
  t.match(err.message, /closed the connection before answering/);
});

t.test('a CA file that is not a PEM certificate is refused before connecting, saying why', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-ca-'));
  const pem = await certificate({ ips: ['127.0.0.1'] });
  const files = {
    good: pem.cert,
    text: 'this is not a certificate\n',
    key: pem.key,
    der: Buffer.from([0x30, 0x82, 0x01, 0x0a, 0x02]),
    broken: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
  };
  for (const [name, content] of Object.entries(files)) writeFileSync(path.join(dir, name), content);
  t.match(readCa(path.join(dir, 'good')).toString(), /BEGIN CERTIFICATE/);
  const cases: Array<[string, RegExp]> = [
    ['text', /is not a PEM certificate \(no "BEGIN CERTIFICATE" block\)/],
    ['key', /holds a private key, not a certificate/],
    ['der', /looks like DER/],
    ['broken', /cannot be parsed/],
    ['missing', /does not exist/],
  ];
  for (const [name, advice] of cases) {
    const err = await failure(Promise.resolve().then(() => readCa(path.join(dir, name))));
    t.equal(err.reason, 'bad-ca', name);
    t.match(err.message, advice, name);
  }
});
