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
