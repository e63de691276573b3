import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { ServiceError } from '../../src/errors.js';
import { rotateKey } from '../../src/keys/key-ring.js';
import { RateLimited } from '../../src/services/throttle.js';
import { isWellFormedToken, TOKEN_PREFIX } from '../../src/primitives/tokens.js';
import type { Caller } from '../../src/services/session-service.js';
import type { CheckResult } from '../../src/services/token-service.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import type { Store } from '../../src/store/store.js';
import { ALICE, BOB, buildKit, countingStore, incoherentStore, MINUTE, policyOf, SECOND, T0, type Kit, refusal } from '../helpers/services.js';

const input = (c: Caller, request = 'orders.read') => ({ token: c.token, mac: c.mac, seenIp: c.seenIp, request });
const check = (kit: Kit, c: Caller, request?: string) => kit.tokens.check(input(c, request), kit.log);
const authenticate = (kit: Kit, c: Caller) => kit.tokens.authenticate({ ...c, command: 'session.list' }, kit.log);
const tmpFile = () => path.join(mkdtempSync(path.join(os.tmpdir(), 'hellwall-tok-')), 'hellwall.db');
const reasons = (kit: Kit) => kit.logs.find({ event: 'token.check', outcome: 'unauthorized' }).map((l) => l.reason);
const renewed = (r: CheckResult): string => {
  if (r.status !== 'renew') throw new Error(`expected renew, got ${r.status}`);
  return r.token;
};

// Short limits where the test walks through them: ttl 2 min, idle 5 min, absolute 10 min, grace 10 s.
const SHORT = { tokens: { ttlSeconds: 120, idleSeconds: 300, absoluteSeconds: 600, graceSeconds: 10 } };

t.test('a live session answers authorized from the cache, synchronously, with no store call after the first', async (t) => {
  let counter!: ReturnType<typeof countingStore>;
  const kit = await buildKit(t, { wrap: (s) => (counter = countingStore(s)).store });
  const { caller, id } = await kit.openSession(ALICE.email);
  counter.reset();

  const first = await check(kit, caller);
  t.same(first, { status: 'authorized', user: { email: ALICE.email, role: 'user' }, expiresAt: T0 + 3600 * SECOND });
  t.same(counter.calls, { findSessionByMaster: 1 }, 'the first check reads the session once');

  counter.reset();
  const second = check(kit, caller);
  t.notOk(second instanceof Promise, 'answered without a promise');
  t.same(second, first);
  t.equal(counter.total(), 0, 'no store call');

  kit.clock.now += MINUTE;
  t.same(check(kit, caller), first, 'still from the cache a minute later');
  t.same(counter.calls, { touchSession: 1 }, 'last activity written once a minute, and nothing else');
  t.equal((await kit.raw.findSessionById(id))!.lastSeenAt, T0 + MINUTE);
  counter.reset();
  kit.clock.now += 59 * SECOND;
  check(kit, caller);
  t.equal(counter.total(), 0, 'not again within the minute');
});

t.test('an expired token renews: new token, generation + 1, a token.renew row committed with the rotation', async (t) => {
  const kit = await buildKit(t);
  const { caller, id } = await kit.openSession(ALICE.email);
  kit.clock.now = T0 + 3600 * SECOND;
  const r = await check(kit, caller, 'orders.write');
  const token = renewed(r);
  t.ok(isWellFormedToken(token));
  t.not(token, caller.token);
  t.same(r, {
    status: 'renew',
    token,
    user: { email: ALICE.email, role: 'user' },
    expiresAt: kit.clock.now + 3600 * SECOND,
    renewableUntil: T0 + 2_592_000 * SECOND,
  });
  const row = (await kit.raw.findSessionById(id))!;
  t.equal(row.generation, 1);
  t.equal(row.lastSeenAt, kit.clock.now, 'a renewal is activity');
  // Read straight from the store, without a group commit: the row came with the rotation's commit.
  const rows = await kit.raw.queryAudit({ action: 'token.renew', limit: 10 });
  t.equal(rows.length, 1);
  t.match(rows[0], { outcome: 'success', userId: kit.users[ALICE.email]!.id, email: ALICE.email, sessionId: id, ip: caller.seenIp, mac: caller.mac });
  t.same(rows[0]!.detail, { generation: 1, request: 'orders.write' });
  t.equal(kit.metrics.counts.renewal, 1);

  const next = { ...caller, token };
  t.equal((await check(kit, next)).status, 'authorized', 'the new token is authorized');
});

t.test('within the grace the old token gets the same successor; after it the session is revoked for reuse', async (t) => {
  const kit = await buildKit(t);
  const { caller, id } = await kit.openSession(ALICE.email);
  kit.clock.now = T0 + 3600 * SECOND;
  const token = renewed(await check(kit, caller));
  const next = { ...caller, token };
  t.equal((await check(kit, next)).status, 'authorized');

  kit.clock.now += 30 * SECOND; // the grace's last instant
  const again = await check(kit, caller);
  t.equal(renewed(again), token, 'the very same successor, not a second one');
  t.equal((await kit.raw.findSessionById(id))!.generation, 1, 'no second rotation');
  t.equal((await kit.raw.queryAudit({ action: 'token.renew', limit: 10 })).length, 1, 'the grace answer is not a renewal');

  kit.clock.now += 1;
  t.same(await check(kit, caller), { status: 'unauthorized' }, 'the old token after the grace');
  const row = (await kit.raw.findSessionById(id))!;
  t.equal(row.revokeReason, 'token-reuse');
  t.equal(row.revokedAt, kit.clock.now);
  t.same(await check(kit, next), { status: 'unauthorized' }, 'the successor stops working too');
  t.same(await check(kit, caller), { status: 'unauthorized' }, 'and the old one stays refused');
  const reuse = await kit.raw.queryAudit({ action: 'token.reuse', limit: 10 });
  t.equal(reuse.length, 1, 'reuse audited once');
  t.match(reuse[0], { outcome: 'failure', sessionId: id, email: ALICE.email });
  t.match(reuse[0]!.detail, { generation: 0, retiredAt: T0 + 3600 * SECOND });
  t.equal(kit.metrics.counts.reuseDetected, 1);
});

t.test('a session idle beyond the idle limit cannot renew; a touch moves the limit', async (t) => {
  const kit = await buildKit(t, { config: SHORT });
  const a = await kit.openSession(ALICE.email);
  const b = await kit.openSession(ALICE.email, { mac: '00:00:00:00:00:02' });
  const c = await kit.openSession(ALICE.email, { mac: '00:00:00:00:00:03' });
  kit.clock.now = T0 + MINUTE;
  t.equal((await check(kit, c.caller)).status, 'authorized', 'c is used after a minute (touched)');

  kit.clock.now = T0 + 299 * SECOND;
  t.equal((await check(kit, a.caller)).status, 'renew', 'a, one second inside the idle limit');
  kit.clock.now = T0 + 300 * SECOND;
  t.same(await check(kit, b.caller), { status: 'unauthorized' }, 'b, at the idle limit');
  const row = (await kit.raw.findSessionById(b.id))!;
  t.equal(row.generation, 0, 'not rotated');
  t.equal(row.revokedAt, null, 'not revoked either: it simply cannot renew');
  kit.clock.now = T0 + MINUTE + 299 * SECOND;
  t.equal((await check(kit, c.caller)).status, 'renew', 'c, counted from its last activity');
  t.same(reasons(kit), ['idle-limit']);
});

t.test('no renewal past the absolute limit, and the last expiry is capped at it', async (t) => {
  const kit = await buildKit(t, { config: SHORT });
  const { caller } = await kit.openSession(ALICE.email);
  kit.clock.now = T0 + 290 * SECOND;
  const one = await check(kit, caller);
  t.match(one, { status: 'renew', expiresAt: T0 + 410 * SECOND, renewableUntil: T0 + 600 * SECOND });
  kit.clock.now = T0 + 580 * SECOND;
  const two = await check(kit, { ...caller, token: renewed(one) });
  t.match(two, { status: 'renew', expiresAt: T0 + 600 * SECOND, renewableUntil: T0 + 600 * SECOND }, 'capped at the absolute limit');
  const last = { ...caller, token: renewed(two) };
  kit.clock.now = T0 + 600 * SECOND - 1;
  t.equal((await check(kit, last)).status, 'authorized');
  kit.clock.now = T0 + 600 * SECOND;
  t.same(await check(kit, last), { status: 'unauthorized' });
  t.same(reasons(kit), ['absolute-limit']);
});

t.test('a request the policy denies is unauthorized, rotates nothing, and is audited once a minute per session and role', async (t) => {
  const kit = await buildKit(t, { config: { limits: { ipFailedChecksPerMinute: 2 } } });
  kit.policy.current = policyOf({ rules: [{ requests: ['billing.*'], roles: ['admin'] }, { requests: ['*'], roles: ['user', 'admin'] }] });
  const { caller, id } = await kit.openSession(ALICE.email);
  for (let i = 0; i < 3; i++) t.same(await check(kit, caller, `billing.read${i}`), { status: 'unauthorized' });
  t.doesNotThrow(() => kit.throttle.beforeCheck(caller.seenIp), 'a denial is not a failed check for the address limit');

  let rows = await kit.auditRows({ action: 'token.denied' });
  t.equal(rows.length, 1, 'three denials within a minute: one row');
  t.match(rows[0], { outcome: 'denied', sessionId: id, email: ALICE.email, at: T0 });
  t.same(rows[0]!.detail, { request: 'billing.read0', role: 'user' });

  kit.clock.now = T0 + 3600 * SECOND; // expired: a permitted request would renew
  t.same(await check(kit, caller, 'billing.read'), { status: 'unauthorized' });
  t.equal((await kit.raw.findSessionById(id))!.generation, 0, 'no rotation for a denied request');
  kit.clock.now += 10 * SECOND;
  t.same(await check(kit, caller, 'billing.export'), { status: 'unauthorized' });
  rows = await kit.auditRows({ action: 'token.denied' });
  t.equal(rows.length, 2, 'the first denial a minute on is written, the next one within its minute is not');
  t.match(rows[0], { at: T0 + 3600 * SECOND });
  t.same(rows[0]!.detail, { request: 'billing.read', role: 'user', repeated: 2 }, 'counting the two left out before it');
  t.equal(kit.metrics.counts['audit.coalesced'], 3);

  const r = await check(kit, caller, 'orders.read');
  t.equal(r.status, 'renew', 'a permitted request from the same session renews');
  t.equal((await kit.auditRows({ action: 'token.renew' })).length, 1);
});

t.test('a revocation committed through another connection is seen after store.refresh()', async (t) => {
  const file = tmpFile();
  const kit = await buildKit(t, { file });
  const other: Store = openSqliteStore(file);
  t.teardown(() => other.close());
  const { caller, id } = await kit.openSession(ALICE.email);
  t.equal((await check(kit, caller)).status, 'authorized');

  t.ok(await other.revokeSession(id, kit.clock.now, 'admin-revoked'));
  t.equal((await check(kit, caller)).status, 'authorized', 'until refresh() the node answers from its cache');
  kit.store.refresh();
  const r = check(kit, caller);
  t.ok(r instanceof Promise, 'the cache was dropped: the store is read');
  t.same(await r, { status: 'unauthorized' });
  t.same(reasons(kit), ['revoked']);
});

t.test('the cache is not used while the store cannot vouch for its change feed', async (t) => {
  const file = tmpFile();
  const state = { coherent: false };
  let counter!: ReturnType<typeof countingStore>;
  const kit = await buildKit(t, { file, wrap: (s) => (counter = countingStore(incoherentStore(s, state))).store });
  const { caller, id } = await kit.openSession(ALICE.email);
  counter.reset();

  for (let i = 0; i < 2; i++) t.equal((await check(kit, caller)).status, 'authorized');
  t.equal(counter.calls.findSessionByMaster, 2, 'every check reads the store');
  t.equal(kit.cache.size, 0, 'and keeps nothing');

  state.coherent = true;
  counter.reset();
  await check(kit, caller);
  await check(kit, caller);
  t.same(counter.calls, { findSessionByMaster: 1 }, 'coherent again: the first check fills the cache');

  // A commit this node is never told of (another process, no refresh): while incoherent it is seen at once.
  const other = openSqliteStore(file);
  t.teardown(() => other.close());
  await other.revokeSession(id, kit.clock.now, 'admin-revoked');
  state.coherent = false;
  t.same(await check(kit, caller), { status: 'unauthorized' });
});

t.test('malformed and unknown tokens are unauthorized and use up the address allowance of failed checks', async (t) => {
  let counter!: ReturnType<typeof countingStore>;
  const kit = await buildKit(t, { config: { limits: { ipFailedChecksPerMinute: 4 } }, wrap: (s) => (counter = countingStore(s)).store });
  const { caller } = await kit.openSession(ALICE.email);
  counter.reset();

  for (const token of ['', 'nope', `${TOKEN_PREFIX}short`]) {
    const r = check(kit, { ...caller, token });
    t.same(r, { status: 'unauthorized' }, `malformed ${JSON.stringify(token)}, answered at once`);
  }
  t.equal(counter.total(), 0, 'a malformed token costs no store call');
  t.same(await check(kit, { ...caller, mac: '00:00:00:00:00:99' }), { status: 'unauthorized' }, 'the right token from another device');
  t.same(counter.calls, { findSessionByMaster: 1, findRetiredToken: 1 }, 'an unknown token: one session and one retired lookup per key');

  const refused = (() => {
    try {
      check(kit, caller);
    } catch (err) {
      return err;
    }
    return undefined;
  })();
  t.ok(refused instanceof RateLimited, 'the fifth check from the address is refused, even with a good token');
  t.equal((refused as ServiceError).kind, 'rate-limited');
  t.equal((refused as RateLimited).scope, 'address');
  t.equal((refused as ServiceError).retryAfterSeconds, 15);
  t.equal((await check(kit, { ...caller, seenIp: '192.0.2.77' })).status, 'unauthorized', 'another address is not held (and not bound)');
  kit.clock.now += 15 * SECOND;
  t.equal((await check(kit, caller)).status, 'authorized', 'a quarter minute later, one more is allowed');
});

t.test('authenticate() answers the live session and refuses everything else as unauthenticated', async (t) => {
  const kit = await buildKit(t, { config: { limits: { ipFailedChecksPerMinute: 1000 } } });
  const alice = await kit.openSession(ALICE.email);
  const bob = await kit.openSession(BOB.email);
  const gone = await kit.openSession(ALICE.email, { mac: '00:00:00:00:00:02' });
  t.equal((await authenticate(kit, alice.caller)).id, alice.id);

  const refusals: Array<[string, Caller]> = [['malformed', { ...alice.caller, token: 'x' }], ['another device', { ...alice.caller, mac: '00:00:00:00:00:99' }]];
  await kit.raw.revokeSession(gone.id, kit.clock.now, 'logout');
  refusals.push(['revoked', gone.caller]);
  await kit.raw.setUserDisabled(kit.users[BOB.email]!.id, true);
  refusals.push(['account disabled', bob.caller]);
  for (const [what, caller] of refusals) {
    await t.rejects(authenticate(kit, caller), { name: 'ServiceError', kind: 'unauthenticated', message: 'not authenticated' }, what);
  }

  kit.clock.now = T0 + 3600 * SECOND;
  await t.rejects(authenticate(kit, alice.caller), refusal('unauthenticated'), 'expired: not renewed by a session command');
  t.equal((await kit.raw.findSessionById(alice.id))!.generation, 0);
  const token = renewed(await check(kit, alice.caller));
  await t.rejects(authenticate(kit, alice.caller), refusal('unauthenticated'), 'a rotated-out token, even within its grace');
  t.equal((await authenticate(kit, { ...alice.caller, token })).id, alice.id, 'the successor authenticates');
  t.same(
    kit.logs.find({ event: 'session.auth' }).map((l) => l.reason),
    ['malformed-token', 'unknown-token-or-binding', 'revoked', 'account-disabled', 'expired', 'unknown-token-or-binding'],
  );
});

t.test('a session made under an older key still checks, and its renewal moves it onto the current key', async (t) => {
  const kit = await buildKit(t);
  const { caller, id } = await kit.openSession(ALICE.email);
  rotateKey(kit.dataDir, kit.random, kit.log);
  kit.keys.reload();
  t.equal(kit.keys.current.id, 2);
  t.equal((await check(kit, caller)).status, 'authorized');
  kit.clock.now = T0 + 3600 * SECOND;
  const token = renewed(await check(kit, caller));
  t.equal((await kit.raw.findSessionById(id))!.keyId, 2);
  t.equal((await check(kit, { ...caller, token })).status, 'authorized');
});

t.test('two checks racing to renew one expired token both get the one successor', async (t) => {
  const kit = await buildKit(t);
  const { caller, id } = await kit.openSession(ALICE.email);
  t.equal((await check(kit, caller)).status, 'authorized', 'cached, so both start from the same copy');
  kit.clock.now = T0 + 3600 * SECOND;
  const [one, two] = await Promise.all([check(kit, caller), check(kit, caller)]);
  t.equal(renewed(one), renewed(two), "the loser is handed the winner's successor");
  t.equal((await kit.raw.findSessionById(id))!.generation, 1, 'rotated once');
  t.equal((await kit.raw.queryAudit({ action: 'token.renew', limit: 10 })).length, 1);
  t.equal(kit.metrics.counts.renewal, 1);
});
