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
