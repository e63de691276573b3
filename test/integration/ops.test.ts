import { once } from 'node:events';
import net from 'node:net';
import t from 'tap';
import { httpGet, sample } from '../helpers/http.js';
import { HellwallClient } from '../../src/client/client.js';
import { ALICE, MAC, startHarness } from '../helpers/harness.js';

const MIN = 60_000;

t.test('health, readiness and a 404 on the ops listener', async (t) => {
  const h = await startHarness(t);
  t.ok(h.opsPort > 0, 'the ops listener runs beside the TLS listener');
  t.same(await httpGet(h.opsPort, '/healthz'), { status: 200, type: 'text/plain', body: 'ok\n' });
  const ready = await httpGet(h.opsPort, '/readyz');
  t.equal(ready.status, 200);
  t.same(JSON.parse(ready.body), { ready: true, failing: {} });
  t.equal((await httpGet(h.opsPort, '/nope')).status, 404);
  t.equal((await httpGet(h.opsPort, '/metrics', 'POST')).status, 405);
  const head = await httpGet(h.opsPort, '/healthz', 'HEAD');
  t.equal(head.status, 200);
  t.equal(head.body, '', 'HEAD has no body');
});

t.test('readiness fails with the reason when the database is unreachable', async (t) => {
  const h = await startHarness(t);
  await h.app.store.close();
  const ready = await httpGet(h.opsPort, '/readyz');
  t.equal(ready.status, 503);
  t.match(JSON.parse(ready.body), { ready: false, failing: { database: /closed/ } });
  t.equal((await httpGet(h.opsPort, '/healthz')).status, 200, 'still alive: a restart would not help');
  t.equal(h.logs.find({ msg: 'not ready' }).length, 1, 'logged');
});

t.test('readiness fails once the certificate has expired', async (t) => {
  const h = await startHarness(t);
  h.clock.advance(3 * 366 * 24 * 60 * MIN);
  const ready = await httpGet(h.opsPort, '/readyz');
  t.equal(ready.status, 503);
  t.match(JSON.parse(ready.body), { failing: { certificate: /^expired / } });
});

t.test('metrics count requests, outcomes, renewals, reuse, mail and connections', async (t) => {
  const h = await startHarness(t, { config: { tokens: { ttlSeconds: 60, graceSeconds: 30 } } });
  const client = await h.connect();
  const login = await h.login(client);
  await client.check({ token: login.token, mac: MAC, request: 'inventory.read' });
  await client.check({ token: 'Awfer_hellwall_nope', mac: MAC, request: 'inventory.read' });
  await client.send({ code: 3, token: login.token });
  await client.send({ code: 999 }); // no command has this code
  h.clock.advance(2 * MIN);
  const renewed = await client.check({ token: login.token, mac: MAC, request: 'inventory.read' });
  t.equal(renewed.status, 'renew');
  h.clock.advance(1 * MIN);
  t.equal((await client.check({ token: login.token, mac: MAC, request: 'inventory.read' })).status, 'unauthorized', 'reuse after the grace');
  await h.app.mail.drain();

  const { status, type, body } = await httpGet(h.opsPort, '/metrics');
  t.equal(status, 200);
  t.match(type, /^text\/plain; version=0\.0\.4/);
  const expect: Record<string, number> = {
    'hellwall_requests_total{command="passcode.request",outcome="ok"}': 1,
    'hellwall_requests_total{command="passcode.auth",outcome="ok"}': 1,
    'hellwall_requests_total{command="token.check",outcome="authorized"}': 1,
    'hellwall_requests_total{command="token.check",outcome="renew"}': 1,
    'hellwall_requests_total{command="token.check",outcome="unauthorized"}': 2,
    'hellwall_requests_total{command="token.check",outcome="E_SCHEMA"}': 1,
    'hellwall_requests_total{command="unknown",outcome="E_UNKNOWN_COMMAND"}': 1,
    'hellwall_request_duration_seconds_count{command="token.check"}': 5,
    hellwall_token_renewals_total: 1,
    hellwall_token_reuse_detected_total: 1,
    // The passcode mail, and the alert to the owner that the reused token ended the session.
    'hellwall_mail_total{outcome="sent"}': 2,
    hellwall_connections_open: 1,
    hellwall_connections_total: 1,
    hellwall_sessions_active: 0,
  };
  for (const [series, value] of Object.entries(expect)) t.equal(sample(body, series), value, series);
  t.ok((sample(body, 'hellwall_process_resident_memory_bytes') ?? 0) > 0, 'process metrics are exported too');

  // A second login is an active session; closing the connection shows in the gauge.
  const again = await h.login(client, ALICE, '00:1a:2b:3c:4d:5f');
  t.equal(again.status, 'ok');
  await client.close();
  await new Promise((r) => setTimeout(r, 50));
  const after = (await httpGet(h.opsPort, '/metrics')).body;
  t.equal(sample(after, 'hellwall_sessions_active'), 1);
  t.equal(sample(after, 'hellwall_connections_open'), 0);
});

t.test('refused connections and E_BUSY are counted', async (t) => {
  const h = await startHarness(t, { config: { maxConnections: 1, passwords: { hashConcurrency: 1, hashQueueMax: 1 } } });
  const first = await h.connect();
  await t.rejects(HellwallClient.connect({ host: '127.0.0.1', port: h.port, ca: h.ca, connectTimeoutMs: 2000 }), 'the second connection is dropped');
  const burst = await Promise.all(Array.from({ length: 6 }, () => first.requestPasscode({ email: ALICE.email, password: ALICE.password, mac: MAC })));
  const busy = burst.filter((r) => r.status === 'error').length;
  t.ok(busy > 0, 'some requests were refused with E_BUSY');
  await h.app.mail.drain();
  const body = (await httpGet(h.opsPort, '/metrics')).body;
  t.equal(sample(body, 'hellwall_connections_refused_total{reason="max_connections"}'), 1);
  t.equal(sample(body, 'hellwall_throttled_total{reason="busy"}'), busy);
  t.equal(h.logs.find({ msg: 'connections refused: too many open connections' }).length, 1);
});

t.test('framing errors and failed handshakes are counted as refused connections', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  await client.sendRaw(Buffer.from([0, 0, 0, 0]));
  await client.closed;
  // Not TLS at all: the server's handshake fails on the first record.
  const plain = net.connect(h.port, '127.0.0.1', () => plain.write('GET / HTTP/1.0\r\n\r\n'));
  plain.resume();
  await once(plain, 'close');
  const body = (await httpGet(h.opsPort, '/metrics')).body;
  t.equal(sample(body, 'hellwall_connections_refused_total{reason="framing_error"}'), 1);
  t.equal(sample(body, 'hellwall_connections_refused_total{reason="tls_handshake"}'), 1);
});

t.test('with the SMTP server down, passcode requests still answer, mail fails after bounded retries, and service resumes', async (t) => {
  const h = await startHarness(t);
  await h.smtp.stop();
  const client = await h.connect();
  const res = await client.requestPasscode({ email: ALICE.email, password: ALICE.password, mac: MAC });
  t.same(res, { id: '1', code: 1, status: 'ok', expiresInSeconds: 180 }, 'the answer does not reveal the mail failure (no enumeration)');
  await h.app.mail.drain();
  t.equal(h.logs.find({ msg: 'mail attempt failed; retrying' }).length, 2, 'retried twice');
  const failed = h.logs.find({ msg: 'mail failed', kind: 'passcode' });
  t.equal(failed.length, 1, 'then given up and logged');
  t.match(failed[0]?.err, /ECONNRESET|closed|ECONNREFUSED/i, 'the transport error is in the log');
  let body = (await httpGet(h.opsPort, '/metrics')).body;
  t.equal(sample(body, 'hellwall_mail_total{outcome="failed"}'), 1);
  t.equal(sample(body, 'hellwall_mail_total{outcome="retried"}'), 2);
  t.equal((await client.hello()).status, 'ok', 'the connection and the service carry on');

  await h.smtp.restart();
  const login = await h.login(client);
  t.equal((await client.check({ token: login.token, mac: MAC, request: 'x' })).status, 'authorized', 'a new passcode arrives and works');
  body = (await httpGet(h.opsPort, '/metrics')).body;
  t.equal(sample(body, 'hellwall_mail_total{outcome="sent"}'), 1);
});

t.test('the ops listener can be turned off', async (t) => {
  const h = await startHarness(t, { config: { ops: { enabled: false } } });
  t.equal(h.opsPort, 0);
  t.equal((await (await h.connect()).hello()).status, 'ok');
});

t.test('the request histogram follows Prometheus semantics (le is inclusive, buckets cumulative)', async (t) => {
  const { createPrometheusMetrics } = await import('../../src/ops/prometheus.js');
  const m = createPrometheusMetrics({ activeSessions: async () => 7, defaultMetrics: false });
  m.request('token.check', 'authorized', 0.0001); // exactly a bound: counted in le="0.0001"
  m.request('token.check', 'authorized', 0.00011);
  m.request('token.check', 'unauthorized', 3); // beyond the last bound: only +Inf
  const text = await m.render();
  t.equal(sample(text, 'hellwall_request_duration_seconds_bucket{le="0.00005",command="token.check"}'), 0);
  t.equal(sample(text, 'hellwall_request_duration_seconds_bucket{le="0.0001",command="token.check"}'), 1);
  t.equal(sample(text, 'hellwall_request_duration_seconds_bucket{le="0.00025",command="token.check"}'), 2);
  t.equal(sample(text, 'hellwall_request_duration_seconds_bucket{le="2.5",command="token.check"}'), 2);
  t.equal(sample(text, 'hellwall_request_duration_seconds_bucket{le="+Inf",command="token.check"}'), 3);
  t.equal(sample(text, 'hellwall_request_duration_seconds_count{command="token.check"}'), 3);
  t.ok(Math.abs(sample(text, 'hellwall_request_duration_seconds_sum{command="token.check"}')! - 3.00021) < 1e-9);
  t.equal(sample(text, 'hellwall_requests_total{command="token.check",outcome="authorized"}'), 2);
  t.equal(sample(text, 'hellwall_requests_total{command="token.check",outcome="unauthorized"}'), 1);
  t.equal(sample(text, 'hellwall_sessions_active'), 7);
  t.match(text, /# TYPE hellwall_request_duration_seconds histogram\n/);
  t.match(text, /# TYPE hellwall_requests_total counter\n/);
});
