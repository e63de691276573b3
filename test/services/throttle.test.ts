import t, { type Test } from 'tap';
import { RateLimited, Throttle, type ThrottleLimits } from '../../src/services/throttle.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import type { Store } from '../../src/store/store.js';

// The Throttle on a real (in-memory SQLite) store and a fake clock. What the limits do over the
// wire, pipelined and from many addresses, is in test/integration/abuse.test.ts; on PostgreSQL
// across two nodes in test/cluster/.

const LIMITS: ThrottleLimits = {
  enabled: true,
  ipPasscodeRequestsPerMinute: 1_000_000,
  ipLoginsPerMinute: 1_000_000,
  ipFailedChecksPerMinute: 60,
  freeFailures: 3,
  backoffMaxSeconds: 900,
  lockoutFailures: 100,
  lockoutSeconds: 900,
  maxTracked: 100,
  passcodesPerHour: 6,
  ipv6Prefix: 64,
};

const EMAIL = 'alice@example.com';

function setup(t: Test, limits: Partial<ThrottleLimits> = {}): { th: Throttle; clock: { now: number }; store: Store } {
  const store = openSqliteStore(':memory:');
  t.teardown(() => store.close());
  const clock = { now: Date.UTC(2026, 11, 1) };
  return { th: new Throttle({ ...LIMITS, ...limits }, () => clock.now, store), clock, store };
}

/** The wait an attempt is told, or null when it was admitted. */
async function waitOf(attempt: Promise<unknown>): Promise<number | null> {
  try {
    await attempt;
    return null;
  } catch (err) {
    if (!(err instanceof RateLimited)) throw err;
    return err.retryAfterSeconds!;
  }
}

t.test('freeFailures attempts go at once; then each waits, 1 s doubling, up to the cap; refusals do not count', async (t) => {
  const { th, clock } = setup(t, { backoffMaxSeconds: 8 });
  const waits: Array<number | null> = [];
  for (let i = 0; i < 4; i++) waits.push(await waitOf(th.admit('passcode.auth', '192.0.2.1', EMAIL)));
  t.same(waits, [null, null, null, 1], 'three admitted, the fourth told to wait 1 s');
  t.equal(await waitOf(th.admit('passcode.auth', '192.0.2.1', EMAIL)), 1, 'asking again does not lengthen the wait');
  clock.now += 1000;
  const seen: Array<number | null> = [];
  for (let i = 0; i < 5; i++) {
    const wait = await waitOf(th.admit('passcode.auth', '192.0.2.1', EMAIL));
    t.equal(wait, null, `admitted after waiting (round ${i + 1})`);
    seen.push(await waitOf(th.admit('passcode.auth', '192.0.2.1', EMAIL)));
    clock.now += (seen.at(-1) ?? 0) * 1000;
  }
  t.same(seen, [2, 4, 8, 8, 8], 'doubling, capped at backoffMaxSeconds');
  t.equal(await waitOf(th.admit('passcode.auth', '192.0.2.99', EMAIL)), null, 'another address is not held back');
});

t.test('concurrent admissions are counted as they are admitted: exactly freeFailures go through', async (t) => {
  const { th } = setup(t);
  const results = await Promise.all(Array.from({ length: 12 }, () => waitOf(th.admit('passcode.auth', '192.0.2.1', EMAIL))));
  t.equal(results.filter((w) => w === null).length, 3, 'three of twelve concurrent attempts admitted');
  t.ok(results.filter((w) => w !== null).every((w) => w === 1), 'the rest told to wait');
});

t.test('a completed login releases the counts; a right password alone does not', async (t) => {
  const { th } = setup(t);
  let last;
  for (let i = 0; i < 3; i++) last = await th.admit('passcode.request', '192.0.2.1', EMAIL);
  t.not(await waitOf(th.admit('passcode.auth', '192.0.2.1', EMAIL)), null, 'held: three attempts outstanding');
  await th.succeeded(last!);
  t.equal(await waitOf(th.admit('passcode.auth', '192.0.2.1', EMAIL)), null, 'released by the completed login');
});

t.test('the account locks after lockoutFailures from anywhere, for lockoutSeconds; the count then starts afresh', async (t) => {
  const { th, clock } = setup(t, { lockoutFailures: 10, lockoutSeconds: 60 });
  const admitted = (
    await Promise.all(Array.from({ length: 24 }, (_, i) => waitOf(th.admit('passcode.auth', `198.51.100.${i + 1}`, EMAIL))))
  ).filter((w) => w === null).length;
  t.equal(admitted, 10, 'exactly lockoutFailures admitted, from 24 addresses at once');
  t.equal(await waitOf(th.admit('passcode.auth', '203.0.113.7', EMAIL)), 60, 'a new address is refused for the cool-down');
  clock.now += 60_000;
  for (let i = 0; i < 10; i++) t.equal(await waitOf(th.admit('passcode.auth', `203.0.113.${i + 10}`, EMAIL)), null, `fresh count: attempt ${i + 1}`);
  t.not(await waitOf(th.admit('passcode.auth', '203.0.113.99', EMAIL)), null, 'locked again only after as many again');
});

t.test('an address group where the account logged in before is not held by the lockout', async (t) => {
  const { th } = setup(t, { lockoutFailures: 5, lockoutSeconds: 900 });
  await th.succeeded(await th.admit('passcode.auth', '2001:db8:aa:1::10', EMAIL));
  for (let i = 0; i < 5; i++) await th.admit('passcode.auth', `198.51.100.${i + 1}`, EMAIL);
  t.not(await waitOf(th.admit('passcode.auth', '198.51.100.50', EMAIL)), null, 'locked for unknown addresses');
  t.equal(await waitOf(th.admit('passcode.auth', '2001:db8:aa:1::99', EMAIL)), null, 'the owner, from the same /64, is let in');
  t.not(await waitOf(th.admit('passcode.auth', '2001:db8:aa:2::10', EMAIL)), null, 'another /64 is not');
});

t.test('IPv6 addresses of one /64 share their per-address limits', async (t) => {
  const { th } = setup(t, { freeFailures: 2 });
  await th.admit('passcode.auth', '2001:db8:1:2::1', EMAIL);
  await th.admit('passcode.auth', '2001:db8:1:2:ffff::2', EMAIL);
  t.not(await waitOf(th.admit('passcode.auth', '2001:db8:1:2::3', EMAIL)), null, 'the third from the /64 waits');
  t.equal(await waitOf(th.admit('passcode.auth', '2001:db8:1:3::1', EMAIL)), null, 'the next /64 does not');
  const checks = setup(t, { ipFailedChecksPerMinute: 2 }).th;
  checks.failedCheck('2001:db8::1');
  checks.failedCheck('2001:db8::2');
  t.throws(() => checks.beforeCheck('2001:db8::3'), RateLimited, 'failed checks from one /64 share a bucket');
  t.doesNotThrow(() => checks.beforeCheck('2001:db9::3'));
});

t.test('passcodes issued per account per hour are capped', async (t) => {
  const { th, clock } = setup(t, { passcodesPerHour: 3 });
  const issued = [];
  for (let i = 0; i < 5; i++) issued.push(await th.passcodeIssued(EMAIL));
  t.same(issued, [true, true, true, false, false]);
  t.equal(await th.passcodeIssued('bob@example.com'), true, 'per account');
  clock.now += 3_600_000;
  t.equal(await th.passcodeIssued(EMAIL), true, 'a new hour');
});

t.test('no email is stored in the counters', async (t) => {
  const store = openSqliteStore(':memory:');
  t.teardown(() => store.close());
  const seen: string[] = [];
  const spy = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'transaction') {
        return (fn: (tx: Store) => Promise<unknown>) =>
          target.transaction((tx) =>
            fn(new Proxy(tx, { get: (t2, p2) => (p2 === 'hitCounters' || p2 === 'readCounters' ? (keys: string[], ...rest: unknown[]) => (seen.push(...keys), (t2 as never as Record<string, (...a: unknown[]) => unknown>)[p2 as string]!(keys, ...rest)) : Reflect.get(t2, p2)) }) as Store),
          );
      }
      return Reflect.get(target, prop, receiver);
    },
  });
  await new Throttle(LIMITS, () => 0, spy).admit('passcode.auth', '192.0.2.1', EMAIL);
  t.ok(seen.length > 0);
  t.notOk(seen.some((k) => k.includes('alice') || k.includes('192.0.2.1')), 'keys are hashes');
});

t.test('disabled limits admit everything and count nothing', async (t) => {
  const { th } = setup(t, { enabled: false, freeFailures: 1 });
  for (let i = 0; i < 5; i++) t.equal(await waitOf(th.admit('passcode.auth', '192.0.2.1', EMAIL)), null);
  t.equal(await th.passcodeIssued(EMAIL), true);
});

t.test('failed token checks per address: a token bucket', async (t) => {
  const { th, clock } = setup(t, { ipFailedChecksPerMinute: 3 });
  th.beforeCheck('192.0.2.1');
  for (let i = 0; i < 3; i++) th.failedCheck('192.0.2.1');
  t.throws(() => th.beforeCheck('192.0.2.1'), RateLimited);
  clock.now += 20_000;
  t.doesNotThrow(() => th.beforeCheck('192.0.2.1'), 'one refills every 20 s');
});
