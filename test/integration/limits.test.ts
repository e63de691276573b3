import t from 'tap';
import { ALICE, MAC, startHarness } from '../helpers/harness.js';
import { within } from '../helpers/test-utils.js';

t.test('a connection idle for longer than idleTimeoutMs is closed, and logged', async (t) => {
  const h = await startHarness(t, { config: { idleTimeoutMs: 300 } });
  const client = await h.connect();
  t.equal((await client.hello()).status, 'ok');
  t.equal(await within(client.closed, 5000), undefined, 'the server closed the idle connection');
  t.equal(h.logs.find({ msg: 'idle timeout; closing connection' }).length, 1);
  const next = await h.connect();
  t.equal((await next.hello()).status, 'ok', 'new connections are served');
});

t.test('password hashing beyond the queue answers E_BUSY and token checks carry on', async (t) => {
  const h = await startHarness(t, { config: { passwords: { hashConcurrency: 1, hashQueueMax: 1 } } });
  const client = await h.connect();
  const burst = Array.from({ length: 6 }, (_, i) =>
    client.send({ code: 1, id: `b${i}`, email: ALICE.email, password: 'wrong password', mac: MAC }),
  );
  const hello = client.hello();
  const answers = await Promise.all(burst);
  const busy = answers.filter((a) => a.status === 'error' && a.error === 'E_BUSY');
  t.equal(answers.filter((a) => a.status === 'ok').length, 2, 'one hashing and one queued are served');
  t.equal(busy.length, 4, 'the rest are told to retry');
  t.ok(busy.every((a) => h.validate(a) === null && a.code === 1), 'E_BUSY is a well-formed error response');
  t.same(answers.map((a) => a.id), ['b0', 'b1', 'b2', 'b3', 'b4', 'b5'], 'still answered in order');
  t.equal((await hello).status, 'ok', 'the connection stays open');
});

t.test('shutdown answers requests already in flight, then closes connections', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  // A passcode request spends its time hashing: it is still in flight when shutdown starts.
  const inflight = client.requestPasscode({ email: ALICE.email, password: ALICE.password, mac: MAC });
  while (h.app.hasher.limiter.running === 0) await new Promise((r) => setImmediate(r));
  const closing = h.app.close(5000);
  t.same(await inflight, { id: '1', code: 1, status: 'ok', expiresInSeconds: 180 }, 'the in-flight request is answered');
  await closing;
  t.equal(await within(client.closed, 2000), undefined, 'then the connection is closed');
  t.equal(h.smtp.messages.length, 1, 'queued mail was delivered before the database closed');
  t.ok(h.logs.find({ msg: 'hellwall stopped' }).length === 1);
});

t.test('a write lock held by another process answers E_BUSY, changes nothing, and does not stall the server', async (t) => {
  const Database = (await import('better-sqlite3')).default;
  const path = await import('node:path');
  const h = await startHarness(t);
  const client = await h.connect();
  const bystander = await h.connect();
  const passcode = await h.requestPasscode(client);
  const login = await client.login({ email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode, mac: MAC });
  if (login.status !== 'ok') return t.fail('login failed');
  const passcode2 = await h.requestPasscode(client);

  const other = new Database(path.join(h.dataDir, 'hellwall.db'));
  other.exec('BEGIN IMMEDIATE');
  t.teardown(() => other.close());

  const started = Date.now();
  const busy = await client.login({ email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode: passcode2, mac: MAC });
  t.same(busy, { id: '4', code: 2, status: 'error', error: 'E_BUSY', message: 'server is busy; retry later' }, 'a login that must write is told to retry');
  t.equal((await bystander.hello()).status, 'ok', 'other connections are served meanwhile');
  t.ok(Date.now() - started < 3000, 'the server was not frozen for the old 5 s lock wait');
  other.exec('ROLLBACK');
  t.equal((await client.login({ email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode: passcode2, mac: MAC })).status, 'ok', 'the same passcode works once the lock is gone');

  other.exec('BEGIN IMMEDIATE');
  h.clock.advance(61_000);
  t.equal((await client.check({ token: login.token, mac: MAC, request: 'r' })).status, 'authorized', 'a check whose activity write is blocked still answers');
  h.clock.advance(3600_000);
  const renewal = await client.check({ token: login.token, mac: MAC, request: 'r' });
  t.equal(renewal.status === 'error' && renewal.error, 'E_BUSY', 'a renewal that cannot be stored is not answered with a token');

  other.exec('ROLLBACK');
  t.equal((await client.check({ token: login.token, mac: MAC, request: 'r' })).status, 'renew', 'the renewal goes through once the lock is gone');
  t.ok(h.logs.find({ msg: 'database busy' }).length >= 2, 'contention is logged');
});

t.test('connections per address are capped before any TLS work; other addresses are not affected', async (t) => {
  const { HellwallClient } = await import('../../src/client/client.js');
  const h = await startHarness(t, { config: { maxConnectionsPerIp: 2 } });
  const a = await h.connect();
  const b = await h.connect();
  await t.rejects(
    HellwallClient.connect({ host: '127.0.0.1', port: h.port, ca: h.ca, connectTimeoutMs: 3000 }),
    'a third connection from 127.0.0.1 is closed at once',
  );
  const other = await h.connect({ localAddress: '127.0.0.2' });
  t.equal((await other.hello()).status, 'ok', 'another address still connects');
  t.equal((await a.hello()).status, 'ok', 'the open ones are untouched');
  await b.close();
  await new Promise((r) => setTimeout(r, 50));
  const again = await h.connect();
  t.equal((await again.hello()).status, 'ok', 'a closed connection frees its slot');
  t.equal(h.logs.find({ msg: 'connections refused: too many open connections from one address', ip: '127.0.0.1' }).length, 1);
  t.match(await h.app.metrics.render(), /^hellwall_connections_refused_total\{reason="max_connections_per_ip"\} 1$/m);
  t.equal(h.logs.find({ msg: 'TLS handshake failed' }).length, 0, 'the refused socket never reached TLS');
});

t.test('a frame not completed within frameTimeoutMs of its first byte closes the connection [P-1.6]', async (t) => {
  const h = await startHarness(t, { config: { frameTimeoutMs: 400 } });
  const client = await h.connect();
  t.equal((await client.hello()).status, 'ok');
  // A header announcing 100 bytes, then a byte every 100 ms: progress, but the frame never ends in time.
  client.socket.write(Buffer.from([0, 0, 0, 100]));
  const trickle = setInterval(() => client.socket.writable && client.socket.write(Buffer.from(' ')), 100);
  t.teardown(() => clearInterval(trickle));
  const started = Date.now();
  t.equal(await within(client.closed, 5000), undefined, 'the server closed the connection');
  clearInterval(trickle);
  t.ok(Date.now() - started >= 350, 'not before the deadline');
  t.equal(h.logs.find({ msg: 'frame not completed in time; closing connection' }).length, 1, 'logged');
  t.match(await h.app.metrics.render(), /^hellwall_connections_refused_total\{reason="frame_timeout"\} 1$/m, 'counted');
});

t.test('slow but complete frames, and reads that end mid-frame, are not cut by the frame deadline', async (t) => {
  const { encodeFrame } = await import('../../src/codec/frame-encoder.js');
  const h = await startHarness(t, { config: { frameTimeoutMs: 300 } });
  const client = await h.connect();
  // Each write ends in the middle of the next frame, but every frame completes within 150 ms.
  const frames = Buffer.concat(Array.from({ length: 8 }, (_, i) => encodeFrame({ code: 0, id: `s${i}` })));
  const answers: Array<Promise<unknown>> = [];
  const cut = Math.floor(frames.length / 8);
  for (let i = 0; i < 8; i++) {
    answers.push(client.sendRaw(frames.subarray(i * cut, i === 7 ? frames.length : (i + 1) * cut)));
    await new Promise((r) => setTimeout(r, 120));
  }
  // sendRaw queued one waiter per write; the eight frames make eight answers.
  const got = (await Promise.all(answers)) as Array<{ id: string; status: string }>;
  t.same(got.map((a) => a.id), ['s0', 's1', 's2', 's3', 's4', 's5', 's6', 's7'], 'every frame answered, in order');
  t.equal(h.logs.find({ msg: 'frame not completed in time; closing connection' }).length, 0);
  t.equal((await client.hello()).status, 'ok', 'the connection is still open after about 1 s of slow frames');
});
