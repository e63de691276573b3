import t from 'tap';
import type { ConfigInput } from '../../src/config.js';
import { ALICE, MAC, startHarness } from '../helpers/harness.js';

// [P-2.8] Rate limits and lockout over the real wire, on the harness's fake clock. Every response
// here also passes the contract check (E_RATE_LIMITED with retryAfterSeconds is in each command's
// error list).

const SEC = 1000;
const WRONG = { email: ALICE.email, password: 'not the password', mac: MAC };
const NOBODY = { email: 'nobody@example.com', password: 'not the password', mac: MAC };

/** The harness turns the limits off; these tests set the ones they exercise (the rest default). */
function limits(l: Record<string, number>): { config: ConfigInput } {
  return { config: { limits: { ipPasscodeRequestsPerMinute: 1000, ipLoginsPerMinute: 1000, ipFailedChecksPerMinute: 1000, freeFailures: 1000, ...l } } };
}

t.test('passcode requests per address: a token bucket, refused before any password work', async (t) => {
  const h = await startHarness(t, limits({ ipPasscodeRequestsPerMinute: 3 }));
  let verified = 0;
  const original = h.app.hasher.verify.bind(h.app.hasher);
  h.app.hasher.verify = (encoded, password) => {
    verified++;
    return original(encoded, password);
  };
  const client = await h.connect();
  for (let i = 0; i < 3; i++) t.match(await client.requestPasscode(NOBODY), { status: 'ok' });
  const refused = await client.requestPasscode(NOBODY);
  t.same(refused, { id: '4', code: 1, status: 'error', error: 'E_RATE_LIMITED', message: 'too many attempts; retry later', retryAfterSeconds: 20 });
  t.equal(verified, 3, 'the refused request cost no password hash');
  const other = await h.connect({ localAddress: '127.0.0.2' });
  t.match(await other.requestPasscode(NOBODY), { status: 'ok' }, 'another address has its own bucket');
  h.clock.advance(20 * SEC);
  t.match(await client.requestPasscode(NOBODY), { status: 'ok' }, 'one request per 20 s refills');
  t.match(await client.requestPasscode(NOBODY), { error: 'E_RATE_LIMITED' });
  t.equal(h.logs.find({ msg: 'request throttled', scope: 'address' }).length, 2, 'logged with the limit that fired');
});

t.test('failures for one account from one address back off, doubling; the owner elsewhere is not held back', async (t) => {
  const h = await startHarness(t, limits({ freeFailures: 3 }));
  const attacker = await h.connect();
  // Each attempt is counted when admitted: once 3 are outstanding, the next must wait.
  for (let i = 0; i < 3; i++) t.match(await attacker.requestPasscode(WRONG), { status: 'ok' }, `failure ${i + 1} answers like any request`);
  t.match(await attacker.requestPasscode(WRONG), { error: 'E_RATE_LIMITED', retryAfterSeconds: 1 }, 'after 3 free failures: wait 1 s');
  h.clock.advance(1 * SEC);
  t.match(await attacker.requestPasscode(WRONG), { status: 'ok' });
  t.match(await attacker.requestPasscode(WRONG), { error: 'E_RATE_LIMITED', retryAfterSeconds: 2 }, 'then 2 s');
  h.clock.advance(2 * SEC);
  t.match(await attacker.requestPasscode(WRONG), { status: 'ok' });
  t.match(await attacker.requestPasscode(WRONG), { error: 'E_RATE_LIMITED', retryAfterSeconds: 4 }, 'then 4 s');

  // The owner, from another address, logs in at once; the completed login releases the account's counts.
  const owner = await h.connect({ localAddress: '127.0.0.2' });
  const login = await h.login(owner);
  t.equal(login.status, 'ok', 'the attacker did not lock the owner out');
  t.match(await attacker.requestPasscode(WRONG), { error: 'E_RATE_LIMITED' }, "the attacker's own backoff at its address remains");
});

t.test('an unknown account is throttled exactly like a real one (no enumeration)', async (t) => {
  const h = await startHarness(t, limits({ freeFailures: 2, lockoutFailures: 6, lockoutSeconds: 60 }));
  const client = await h.connect();
  const run = async (who: typeof WRONG): Promise<unknown[]> => {
    const answers: unknown[] = [];
    for (let i = 0; i < 8; i++) {
      const { id: _id, ...rest } = await client.requestPasscode(who);
      answers.push(rest);
      h.clock.advance(5 * SEC);
    }
    return answers;
  };
  const real = await run(WRONG);
  h.clock.advance(3600 * SEC);
  const unknown = await run(NOBODY);
  t.same(unknown, real, 'the same sequence of answers, throttled at the same points');
  t.ok(real.some((a) => (a as { error?: string }).error === 'E_RATE_LIMITED'), 'and the sequence does include throttling');
});

t.test('100 consecutive failures from anywhere lock the account for the cool-down; after it the count starts afresh', async (t) => {
  const h = await startHarness(t, limits({ lockoutFailures: 100, lockoutSeconds: 900 }));
  const addresses = ['127.0.0.1', '127.0.0.3', '127.0.0.4', '127.0.0.5'];
  const clients = await Promise.all(addresses.map((a) => h.connect({ localAddress: a })));
  for (let i = 0; i < 100; i++) {
    t.equal((await clients[i % clients.length]!.requestPasscode(WRONG)).status, 'ok');
  }
  const owner = await h.connect({ localAddress: '127.0.0.2' });
  const right = { email: ALICE.email, password: ALICE.password, mac: MAC };
  t.match(await owner.requestPasscode(right), { error: 'E_RATE_LIMITED', retryAfterSeconds: 900 }, 'even the right password waits');
  t.ok(h.logs.find({ msg: 'request throttled', scope: 'account', lockedOut: true }).length >= 1);
  // After the cool-down the count starts afresh: it takes as many attempts again to lock it.
  h.clock.advance(900 * SEC);
  t.match(await clients[0]!.requestPasscode(WRONG), { status: 'ok' }, 'after the cool-down one more try');
  t.match(await owner.requestPasscode(right), { status: 'ok' }, 'which does not lock it again');
  for (let i = 2; i < 100; i++) t.equal((await clients[i % clients.length]!.requestPasscode(WRONG)).status, 'ok');
  t.match(await owner.requestPasscode(right), { error: 'E_RATE_LIMITED', retryAfterSeconds: 900 }, 'the 100th attempt since the cool-down locked it again');
  h.clock.advance(900 * SEC);
  const login = await h.login(owner);
  t.equal(login.status, 'ok', 'the owner gets in after the cool-down');
  t.match(await clients[0]!.requestPasscode(WRONG), { status: 'ok' }, 'and the completed login released the count');
  // An address the account completed a login from is not held by the lockout.
  for (let i = 1; i < 100; i++) await clients[i % clients.length]!.requestPasscode(WRONG);
  t.match(await clients[1]!.requestPasscode(WRONG), { error: 'E_RATE_LIMITED', retryAfterSeconds: 900 }, 'locked again');
  t.match(await owner.requestPasscode(right), { status: 'ok' }, "but not for the owner's own address");
});

t.test('passcode guesses back off too, and a throttled guess does not count against the passcode', async (t) => {
  // The passcode request is one of the 4 (a right password releases nothing; only a completed login does).
  const h = await startHarness(t, limits({ freeFailures: 4 }));
  const client = await h.connect();
  const passcode = await h.requestPasscode(client);
  const guess = (code: string) =>
    client.login({ email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode: code, mac: MAC });
  const wrong = passcode === 'AAAAAA' ? 'BBBBBB' : 'AAAAAA';
  t.match(await guess(wrong), { error: 'E_AUTH_FAILED' });
  t.match(await guess(wrong), { error: 'E_AUTH_FAILED' });
  t.match(await guess(wrong), { error: 'E_AUTH_FAILED' });
  const attempts = (await h.app.store.getPasscode(1))?.attempts;
  t.equal(attempts, 3);
  t.match(await guess(passcode), { error: 'E_RATE_LIMITED', retryAfterSeconds: 1 }, 'even the right passcode waits out the backoff');
  t.equal((await h.app.store.getPasscode(1))?.attempts, 3, 'nothing was tried: the guess count is unchanged');
  h.clock.advance(1 * SEC);
  t.match(await guess(passcode), { status: 'ok' }, 'after the wait the right passcode works');
});

t.test('failed token checks per address: guessing tokens is limited, other addresses are not', async (t) => {
  const h = await startHarness(t, limits({ ipFailedChecksPerMinute: 5 }));
  const client = await h.connect();
  const login = await h.login(client);
  const bogus = { token: `Awfer_hellwall_${'A'.repeat(43)}`, mac: MAC, request: 'x' };
  for (let i = 0; i < 5; i++) t.match(await client.check(bogus), { status: 'unauthorized' });
  t.match(await client.check(bogus), { error: 'E_RATE_LIMITED', retryAfterSeconds: 12 });
  t.match(await client.check({ token: login.token, mac: MAC, request: 'x' }), { error: 'E_RATE_LIMITED' }, 'all checks from that address wait');
  const other = await h.connect({ localAddress: '127.0.0.2' });
  t.match(await other.check(bogus), { status: 'unauthorized' }, 'another address is not affected');
  h.clock.advance(12 * SEC);
  t.match(await client.check({ token: login.token, mac: MAC, request: 'x' }), { status: 'authorized' }, 'a successful check costs nothing');
  t.match(await client.check({ token: login.token, mac: MAC, request: 'x' }), { status: 'authorized' });
  t.match(await client.check(bogus), { status: 'unauthorized' }, 'the one refilled failure');
  t.match(await client.check(bogus), { error: 'E_RATE_LIMITED' });
});

t.test('throttled requests are counted in the metrics', async (t) => {
  const h = await startHarness(t, limits({ ipPasscodeRequestsPerMinute: 1 }));
  const client = await h.connect();
  await client.requestPasscode(NOBODY);
  await client.requestPasscode(NOBODY);
  await client.requestPasscode(NOBODY);
  const text = await h.app.metrics.render();
  t.match(text, /^hellwall_throttled_total\{reason="rate_limit"\} 2$/m);
  t.match(text, /^hellwall_requests_total\{command="passcode.request",outcome="E_RATE_LIMITED"\} 2$/m);
});

t.test('limits.enabled=false turns every limit off', async (t) => {
  const h = await startHarness(t, { config: { limits: { enabled: false, ipPasscodeRequestsPerMinute: 1, ipFailedChecksPerMinute: 1, freeFailures: 1 } } });
  const client = await h.connect();
  for (let i = 0; i < 4; i++) t.match(await client.requestPasscode(WRONG), { status: 'ok' });
  for (let i = 0; i < 3; i++) t.match(await client.check({ token: 'nope', mac: MAC, request: 'x' }), { status: 'unauthorized' });
});
