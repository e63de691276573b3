// The check fast path (SessionCache#verified: no HMAC for a (token, MAC, address) this process
// already verified) answers exactly what the slow path answers. Each test warms every cache first —
// the session in the master-token map and the verified memo — then changes one thing and asserts
// the very next check's answer.
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { retireKey, rotateKey } from '../../src/keys/key-ring.js';
import { RateLimited } from '../../src/services/throttle.js';
import type { Caller } from '../../src/services/session-service.js';
import type { CheckResult } from '../../src/services/token-service.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import { ALICE, buildKit, MINUTE, policyOf, SECOND, T0, type Kit } from '../helpers/services.js';

const input = (c: Caller, request = 'orders.read') => ({ token: c.token, mac: c.mac, seenIp: c.seenIp, request });
const check = (kit: Kit, c: Caller, request?: string) => kit.tokens.check(input(c, request), kit.log);
const tmpFile = () => path.join(mkdtempSync(path.join(os.tmpdir(), 'hellwall-fast-')), 'hellwall.db');
const renewed = (r: CheckResult): string => {
  if (r.status !== 'renew') throw new Error(`expected renew, got ${r.status}`);
  return r.token;
};

/** Checks until the answer comes from the memo: synchronous, and `verified` names the session. */
async function warm(t: Test, kit: Kit, c: Caller, id: number): Promise<CheckResult> {
  await check(kit, c);
  const r = check(kit, c);
  t.notOk(r instanceof Promise, 'warm: answered synchronously');
  t.equal(kit.cache.verified(c.token, c.mac, c.seenIp, kit.keys.current.id)?.id, id, 'warm: the memo names the session');
  return r;
}

t.test('a warm check answers from the memo, the same as a cold one', async (t) => {
  const kit = await buildKit(t);
  const { caller, id } = await kit.openSession(ALICE.email);
  t.equal(kit.cache.verified(caller.token, caller.mac, caller.seenIp, kit.keys.current.id), undefined, 'nothing remembered before a check');
  const cold = await check(kit, caller);
  t.same(await warm(t, kit, caller, id), cold);
  t.same(cold, { status: 'authorized', user: { email: ALICE.email, role: 'user' }, expiresAt: T0 + 3600 * SECOND });
});

t.test('the memo answers only the exact token, MAC and address it verified', async (t) => {
  const kit = await buildKit(t);
  const { caller, id } = await kit.openSession(ALICE.email);
  await warm(t, kit, caller, id);
  t.same(await check(kit, { ...caller, seenIp: '192.0.2.99' }), { status: 'unauthorized' }, 'another address');
  t.same(await check(kit, { ...caller, mac: '00:1a:2b:3c:4d:5f' }), { status: 'unauthorized' }, 'another MAC');
  const other = `${caller.token.slice(0, -1)}${caller.token.endsWith('A') ? 'B' : 'A'}`;
  t.same(await check(kit, { ...caller, token: other }), { status: 'unauthorized' }, 'another token');
  t.equal((await check(kit, { ...caller, mac: caller.mac.toUpperCase().replace(/:/g, '-') })).status, 'authorized', 'the same MAC written otherwise (slow path)');
  t.equal(kit.cache.verified(caller.token, caller.mac, '192.0.2.99', kit.keys.current.id), undefined, 'a failed binding is never remembered');
  t.equal((await check(kit, caller)).status, 'authorized', 'and the memo still serves the original');
});

t.test('revocation through this node acts on the next check, and the memo forgets the token', async (t) => {
  const kit = await buildKit(t);
  const { caller, id } = await kit.openSession(ALICE.email);
  await warm(t, kit, caller, id);
  t.ok(await kit.store.revokeSession(id, kit.clock.now, 'admin-revoked'));
  t.equal(kit.cache.verified(caller.token, caller.mac, caller.seenIp, kit.keys.current.id), undefined, 'forgotten with its session');
  t.same(await check(kit, caller), { status: 'unauthorized' });
});

t.test('revocation committed by another process acts on the check after the poll', async (t) => {
  const file = tmpFile();
  const kit = await buildKit(t, { file });
  const other = openSqliteStore(file);
  t.teardown(() => other.close());
  const { caller, id } = await kit.openSession(ALICE.email);
  await warm(t, kit, caller, id);
  t.ok(await other.revokeSession(id, kit.clock.now, 'admin-revoked'));
  kit.store.refresh();
  t.same(await check(kit, caller), { status: 'unauthorized' });
});

t.test('a disabled account, a role change and a policy reload act on the next warm check', async (t) => {
  const kit = await buildKit(t);
  const { caller, id } = await kit.openSession(ALICE.email);
  const user = kit.users[ALICE.email]!;

  await warm(t, kit, caller, id);
  kit.policy.current = policyOf({ rules: [{ requests: ['orders.*'], roles: ['admin'] }] });
  t.same(check(kit, caller), { status: 'unauthorized' }, 'a policy that no longer allows the role');
  kit.policy.current = policyOf({ rules: [{ requests: ['*'], roles: ['user', 'admin'] }] });

  await warm(t, kit, caller, id);
  t.ok(await kit.store.setUserRole(user.id, 'admin'));
  t.match(await check(kit, caller), { status: 'authorized', user: { role: 'admin' } }, 'the new role, not the cached one');

  await warm(t, kit, caller, id);
  t.ok(await kit.store.setUserDisabled(user.id, true));
  t.same(await check(kit, caller), { status: 'unauthorized' }, 'a disabled account');
});

t.test('expiry, renewal, grace and reuse hold with the memo warm', async (t) => {
  const kit = await buildKit(t);
  const { caller, id } = await kit.openSession(ALICE.email);
  await warm(t, kit, caller, id);

  kit.clock.now = T0 + 3600 * SECOND;
  const token = renewed(await check(kit, caller));
  const next = { ...caller, token };
  await warm(t, kit, next, id);
  t.equal(kit.cache.verified(caller.token, caller.mac, caller.seenIp, kit.keys.current.id), undefined, 'the rotated-out token is not remembered');

  kit.clock.now += 10 * SECOND;
  t.equal(renewed(await check(kit, caller)), token, 'within the grace: the same successor');
  t.equal((await check(kit, next)).status, 'authorized', 'the successor still checks, warm');

  kit.clock.now += 30 * SECOND;
  t.same(await check(kit, caller), { status: 'unauthorized' }, 'after the grace: reuse');
  t.equal((await kit.raw.findSessionById(id))!.revokeReason, 'token-reuse');
  t.same(await check(kit, next), { status: 'unauthorized' }, 'and the warm successor stops at once');
});

t.test('the address limit on failed checks refuses warm checks too', async (t) => {
  const kit = await buildKit(t, { config: { limits: { ipFailedChecksPerMinute: 2 } } });
  const { caller, id } = await kit.openSession(ALICE.email);
  await warm(t, kit, caller, id);
  for (let i = 0; i < 2; i++) await check(kit, { ...caller, token: `Awfer_hellwall_${'x'.repeat(43)}` });
  t.throws(() => check(kit, caller), RateLimited, 'refused before the memo is asked');
  kit.clock.now += MINUTE;
  t.equal((check(kit, caller) as CheckResult).status, 'authorized', 'allowed again once the bucket refills');
});

t.test('a key rotation sends warm checks through the current key; retiring the old key ends the session', async (t) => {
  const kit = await buildKit(t);
  const { caller, id } = await kit.openSession(ALICE.email);
  await warm(t, kit, caller, id);
  rotateKey(kit.dataDir, kit.random, kit.log);
  kit.keys.reload();
  t.equal(kit.keys.current.id, 2);
  t.equal(kit.cache.verified(caller.token, caller.mac, caller.seenIp, 2), undefined, 'the memo is per key');
  t.equal((await check(kit, caller)).status, 'authorized', 'the old-key session still checks (slow path)');

  const r = await retireKey({ dataDir: kit.dataDir, store: kit.store, now: kit.clock.now, log: kit.log }, 1);
  t.equal(r.sessions, 1);
  t.same(await check(kit, caller), { status: 'unauthorized' }, 'retired with its key, at once');
});
