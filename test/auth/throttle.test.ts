import t from 'tap';
import { Throttle, ThrottledError, type ThrottleLimits } from '../../src/auth/throttle.js';

const LIMITS: ThrottleLimits = {
  enabled: true,
  ipPasscodeRequestsPerMinute: 60,
  ipLoginsPerMinute: 60,
  ipFailedChecksPerMinute: 60,
  freeFailures: 1,
  backoffMaxSeconds: 900,
  lockoutFailures: 100,
  lockoutSeconds: 900,
  maxTracked: 100,
};

function waitOf(fn: () => void): number | null {
  try {
    fn();
    return null;
  } catch (err) {
    if (!(err instanceof ThrottledError)) throw err;
    return err.details!.retryAfterSeconds!;
  }
}

t.test('the backoff doubles and stops at its cap', async (t) => {
  let now = 0;
  const th = new Throttle(LIMITS, () => now);
  const waits: number[] = [];
  for (let i = 0; i < 14; i++) {
    th.failure('192.0.2.1', 'a@example.com');
    const wait = waitOf(() => th.beforeAttempt('passcode.request', '192.0.2.1', 'a@example.com'));
    waits.push(wait ?? 0);
    now += (wait ?? 0) * 1000;
  }
  t.same(waits, [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900]);
});

t.test('memory stays bounded however many addresses and accounts are seen', async (t) => {
  const th = new Throttle(LIMITS, () => 0);
  for (let i = 0; i < 10_000; i++) {
    const ip = `10.0.${i >> 8}.${i & 255}`;
    th.failure(ip, `user${i}@example.com`);
    th.failedCheck(ip);
    waitOf(() => th.beforeAttempt('passcode.auth', ip, `user${i}@example.com`));
  }
  t.ok(th.tracked <= 4 * LIMITS.maxTracked, `tracked ${th.tracked} entries (four tables of at most ${LIMITS.maxTracked})`);
});

t.test('the least recently used entry is the one forgotten', async (t) => {
  const th = new Throttle({ ...LIMITS, maxTracked: 100, freeFailures: 1 }, () => 0);
  th.failure('192.0.2.1', 'kept@example.com');
  th.failure('192.0.2.1', 'kept@example.com');
  for (let i = 0; i < 99; i++) th.failure('192.0.2.9', `other${i}@example.com`);
  // Touching the kept entry makes it the most recent again before the table overflows.
  th.failure('192.0.2.1', 'kept@example.com');
  th.failure('192.0.2.9', 'overflow@example.com');
  t.ok(waitOf(() => th.beforeAttempt('passcode.request', '192.0.2.1', 'kept@example.com')), 'recently used: still tracked');
});
