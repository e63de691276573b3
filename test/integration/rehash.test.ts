import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { hashParams, PasswordHasher } from '../../src/primitives/passwords.js';
import { ALICE, MAC, startHarness, TEST_SCRYPT, type Harness } from '../helpers/harness.js';
import type { LogLine } from '../helpers/log-sink.js';

// Lower than TEST_SCRYPT (ln=10), which the harness's server hashes with: a hash made before the
// parameters were raised.
const WEAK_SCRYPT = { ln: 8, r: 8, p: 1 };
const BOB = { email: 'bob@example.com', phone: '+1 555 0101', password: 'tangerine kettle migration 42', role: 'user' };

/** Stores Bob as an older release would have: his hash made with the weaker parameters. */
async function addWeakUser(h: Harness): Promise<{ id: number; hash: string }> {
  const weak = new PasswordHasher({ concurrency: 1, queueMax: 1, random: randomBytes, params: WEAK_SCRYPT });
  const hash = await weak.hash(BOB.password);
  const user = await h.app.store.createUser({ email: BOB.email, phone: BOB.phone, role: BOB.role, passwordHash: hash, createdAt: h.clock.now });
  return { id: user.id, hash };
}

const rehashLines = (h: Harness, more: Record<string, unknown> = {}): LogLine[] => h.logs.find({ event: 'password.rehash', ...more });

async function waitForRehash(h: Harness, outcome: string, count = 1): Promise<LogLine> {
  for (let i = 0; i < 500; i++) {
    const lines = rehashLines(h, { outcome });
    if (lines.length >= count) return lines[count - 1]!;
    await sleep(10);
  }
  throw new Error(`no password.rehash ${outcome} logged`);
}

/** Lets the server's post-answer work (the deferred rehash decision, any hash) run out. */
async function settle(h: Harness): Promise<void> {
  await new Promise((r) => setImmediate(r));
  for (let i = 0; i < 100 && h.app.hasher.limiter.running > 0; i++) await sleep(10);
  await sleep(50);
}

const storedHash = async (h: Harness): Promise<string> => (await h.app.store.findUserByEmail(BOB.email))!.passwordHash;

t.test('a login over a hash with weaker parameters stores one with the current parameters, and logging in still works', async (t) => {
  const h = await startHarness(t);
  const bob = await addWeakUser(h);
  t.same(hashParams(bob.hash), WEAK_SCRYPT);
  const client = await h.connect();

  const first = await h.login(client, BOB);
  t.equal(first.status, 'ok');
  const line = await waitForRehash(h, 'rehashed');
  t.match(line, { level: 30, userId: bob.id, from: WEAK_SCRYPT, to: TEST_SCRYPT });

  const rehashed = await storedHash(h);
  t.not(rehashed, bob.hash, 'a new hash was stored');
  t.same(hashParams(rehashed), TEST_SCRYPT, 'the stored hash encodes the current parameters');
  t.same(hashParams(rehashed), h.app.hasher.params);
  t.ok(await h.app.hasher.verify(rehashed, BOB.password), 'it is a hash of the same password');
  t.notOk(h.app.hasher.needsRehash(rehashed));
  t.notOk(h.logs.text.includes(BOB.password), 'the password is never logged');

  // The session from before the rehash still checks: user writes leave the session cache right.
  const check = await client.check({ token: first.token, mac: MAC, request: 'x' });
  t.equal(check.status, 'authorized');

  const second = await h.login(client, BOB);
  t.equal(second.status, 'ok', 'the login works over the new hash');
  await settle(h);
  t.equal(rehashLines(h).length, 1, 'a current hash is not rehashed again');
  t.equal(await storedHash(h), rehashed);

  const alice = await h.login(client, ALICE);
  t.equal(alice.status, 'ok');
  await settle(h);
  t.equal(rehashLines(h).length, 1, 'a user whose hash is current is never rehashed');
});

t.test('a wrong password never triggers a rehash', async (t) => {
  const h = await startHarness(t);
  const bob = await addWeakUser(h);
  const client = await h.connect();

  for (const password of ['tangerine kettle migration 43', BOB.password.toUpperCase(), 'tangerine kettle migration']) {
    const res = await client.requestPasscode({ email: BOB.email, password, mac: MAC });
    t.equal(res.status, 'ok', 'the answer is the same as for the right password');
  }
  // passcode.auth with a wrong password (and no passcode pending): refused, and no rehash either.
  const login = await client.login({ email: BOB.email, phone: BOB.phone, password: 'tangerine kettle migration 43', passcode: 'AAAAAA', mac: MAC });
  t.equal(login.status, 'error');
  await settle(h);
  t.equal(h.logs.find({ event: 'passcode.request', outcome: 'refused', reason: 'bad-password' }).length, 3);
  t.same(rehashLines(h), [], 'no rehash attempted');
  t.equal(await storedHash(h), bob.hash, 'the weak hash is untouched');

  // The right password then does rehash: the test above could not pass by never rehashing.
  await h.requestPasscode(client, BOB);
  await waitForRehash(h, 'rehashed');
  t.same(hashParams(await storedHash(h)), TEST_SCRYPT);
});

t.test('passcode.auth accepts the right password when a rehash lands during its password check', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const { hasher, store } = h.app;
  const alice = (await store.findUserByEmail(ALICE.email))!;
  const passcode = await h.requestPasscode(client);
  await settle(h);

  // A rehash finishing while passcode.auth's (slow) verification runs: same password, new hash.
  const newHash = await hasher.hash(ALICE.password);
  const verify = hasher.verify.bind(hasher);
  let verifications = 0;
  hasher.verify = async (encoded, password) => {
    const ok = await verify(encoded, password);
    if (verifications++ === 0) t.ok(await store.setPasswordHash(alice.id, newHash, alice.passwordHash), 'the rehash lands');
    return ok;
  };
  t.teardown(() => {
    hasher.verify = verify;
  });

  const res = await client.login({ email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode, mac: MAC });
  t.equal(res.status, 'ok', 'the login succeeds');
  t.equal(verifications, 2, 'the password was checked again, against the new hash');
  t.equal((await store.findUserByEmail(ALICE.email))!.passwordHash, newHash);
});

t.test('passcode.auth still refuses when the password changes during its check', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const { hasher, store } = h.app;
  const alice = (await store.findUserByEmail(ALICE.email))!;
  const passcode = await h.requestPasscode(client);
  await settle(h);

  // Not a rehash but a new password: the old one, being checked, must no longer open the account.
  const changed = await hasher.hash('a new password chosen meanwhile');
  const verify = hasher.verify.bind(hasher);
  let verifications = 0;
  hasher.verify = async (encoded, password) => {
    const ok = await verify(encoded, password);
    if (verifications++ === 0) await store.setPasswordHash(alice.id, changed);
    return ok;
  };
  t.teardown(() => {
    hasher.verify = verify;
  });

  const res = await client.login({ email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode, mac: MAC });
  t.match(res, { status: 'error', error: 'E_AUTH_FAILED' });
  t.equal(verifications, 2);
});

t.test('a rehash never overwrites a password changed while it was being computed', async (t) => {
  const h = await startHarness(t);
  const bob = await addWeakUser(h);
  const client = await h.connect();
  const { hasher, store } = h.app;
  const changed = await hasher.hash('a new password chosen meanwhile');
  const hashIfIdle = hasher.hashIfIdle.bind(hasher);
  hasher.hashIfIdle = (password) =>
    hashIfIdle(password)?.then(async (rehash) => {
      await store.setPasswordHash(bob.id, changed);
      return rehash;
    }) ?? null;
  t.teardown(() => {
    hasher.hashIfIdle = hashIfIdle;
  });

  await h.requestPasscode(client, BOB);
  await waitForRehash(h, 'superseded');
  t.equal(await storedHash(h), changed, 'the changed password stands');
  t.same(rehashLines(h, { outcome: 'rehashed' }), []);
});

t.test('a rehash is skipped, not queued, while every hashing slot is busy, and happens at the next login', async (t) => {
  const h = await startHarness(t, { config: { passwords: { hashConcurrency: 1, hashQueueMax: 4 } } });
  const bob = await addWeakUser(h);
  const client = await h.connect();
  const { hasher } = h.app;

  // Right after the request's verification, other work takes the only slot.
  let release!: () => void;
  let busy: Promise<void> | undefined;
  const verify = hasher.verify.bind(hasher);
  hasher.verify = async (encoded, password) => {
    const ok = await verify(encoded, password);
    busy = hasher.limiter.run(() => new Promise<void>((r) => (release = r)));
    return ok;
  };
  const res = await client.requestPasscode({ email: BOB.email, password: BOB.password, mac: MAC });
  t.equal(res.status, 'ok');
  await waitForRehash(h, 'skipped-busy');
  t.equal(hasher.limiter.queued, 0, 'nothing waits in the queue');
  t.equal(await storedHash(h), bob.hash, 'not rehashed yet');
  hasher.verify = verify;
  release();
  await busy;

  await h.requestPasscode(client, BOB);
  await waitForRehash(h, 'rehashed');
  t.same(hashParams(await storedHash(h)), TEST_SCRYPT);
});

t.test('setPasswordHash replaces only the expected hash when told which', async (t) => {
  const h = await startHarness(t);
  const { store } = h.app;
  const alice = (await store.findUserByEmail(ALICE.email))!;
  t.notOk(await store.setPasswordHash(alice.id, 'x', 'not the stored hash'), 'compare-and-set refuses a stale expectation');
  t.equal((await store.findUserByEmail(ALICE.email))!.passwordHash, alice.passwordHash);
  t.ok(await store.setPasswordHash(alice.id, 'y', alice.passwordHash));
  t.equal((await store.findUserByEmail(ALICE.email))!.passwordHash, 'y');
  t.ok(await store.setPasswordHash(alice.id, 'z'), 'unconditional');
  t.equal((await store.findUserByEmail(ALICE.email))!.passwordHash, 'z');
  t.notOk(await store.setPasswordHash(alice.id + 1000, 'z'), 'no such user');
});
