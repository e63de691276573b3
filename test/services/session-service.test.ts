import t from 'tap';
import type { Caller } from '../../src/services/session-service.js';
import { ALICE, BOB, buildKit, IP, SECOND, T0, type Kit, refusal } from '../helpers/services.js';

const check = async (kit: Kit, c: Caller) => (await kit.tokens.check({ ...c, request: 'x' }, kit.log)).status;
const NOT_FOUND = { name: 'ServiceError', kind: 'not-found', message: 'no such active session of yours' };
const DAY = 86_400 * SECOND;

t.test('logout ends the caller session, and only it', async (t) => {
  const kit = await buildKit(t);
  const a = await kit.openSession(ALICE.email, { mac: '00:00:00:00:00:01' });
  const b = await kit.openSession(ALICE.email, { mac: '00:00:00:00:00:02' });
  t.equal(await check(kit, a.caller), 'authorized', 'cached before the logout');
  kit.clock.now += SECOND;

  await kit.sessions.logout(a.caller, kit.log);
  t.match(await kit.raw.findSessionById(a.id), { revokedAt: T0 + SECOND, revokeReason: 'logout' });
  t.equal(await check(kit, a.caller), 'unauthorized', 'the logged-out token is refused at once');
  t.equal(await check(kit, b.caller), 'authorized', 'the other session goes on');
  const [row] = await kit.raw.queryAudit({ action: 'session.logout', limit: 5 });
  t.match(row, { outcome: 'success', sessionId: a.id, userId: kit.users[ALICE.email]!.id, ip: IP, mac: '00:00:00:00:00:01', at: T0 + SECOND });
  await t.rejects(kit.sessions.logout(a.caller, kit.log), refusal('unauthenticated'), 'a second logout does not authenticate');
  t.equal((await kit.raw.queryAudit({ action: 'session.logout', limit: 5 })).length, 1);
});

t.test('revoke ends another session of the same operator; any other target is not-found, alike', async (t) => {
  const kit = await buildKit(t);
  const a = await kit.openSession(ALICE.email, { mac: '00:00:00:00:00:01' });
  const b = await kit.openSession(ALICE.email, { mac: '00:00:00:00:00:02', ip: '192.0.2.22' });
  const bob = await kit.openSession(BOB.email);
  t.equal(await check(kit, b.caller), 'authorized');

  await kit.sessions.revoke(a.caller, b.id, kit.log);
  t.match(await kit.raw.findSessionById(b.id), { revokeReason: 'revoked-by-owner' });
  t.equal(await check(kit, b.caller), 'unauthorized');
  t.equal(await check(kit, a.caller), 'authorized', 'the caller session goes on');
  const [done] = await kit.raw.queryAudit({ action: 'session.revoke', limit: 5 });
  t.match(done, { outcome: 'success', sessionId: a.id });
  t.same(done!.detail, { target: b.id, targetMac: '00:00:00:00:00:02', targetIp: '192.0.2.22' });

  const errors = [];
  for (const target of [bob.id, 9999, b.id]) {
    const err = await kit.sessions.revoke(a.caller, target, kit.log).catch((e: unknown) => e);
    t.match(err, NOT_FOUND, `target ${target}`);
    errors.push(err);
  }
  t.equal(await check(kit, bob.caller), 'authorized', "another operator's session is untouched");
  const refusals = (await kit.auditRows({ action: 'session.revoke' })).filter((r) => r.outcome !== 'success').reverse();
  t.same(
    refusals.map((r) => [r.outcome, r.detail]),
    [
      ['denied', { target: bob.id, reason: 'another-operator' }],
      ['failure', { target: 9999, reason: 'no-such-session' }],
      ['failure', { target: b.id, reason: 'not-active' }],
    ],
  );
  await t.rejects(kit.sessions.revoke({ ...a.caller, token: 'x' }, bob.id, kit.log), refusal('unauthenticated'));
});

t.test('logoutAll ends every session of the operator and answers how many were active', async (t) => {
  const kit = await buildKit(t);
  const stale = await kit.openSession(ALICE.email, { mac: '00:00:00:00:00:03' });
  kit.clock.now = T0 + DAY; // `stale`: expired and idle for a day, open but not active
  const a = await kit.openSession(ALICE.email, { mac: '00:00:00:00:00:01' });
  const b = await kit.openSession(ALICE.email, { mac: '00:00:00:00:00:02' });
  const bob = await kit.openSession(BOB.email);

  t.equal(await kit.sessions.logoutAll(a.caller, kit.log), 2);
  for (const s of [stale, a, b]) t.match(await kit.raw.findSessionById(s.id), { revokedAt: T0 + DAY, revokeReason: 'logout-all' });
  t.equal(await check(kit, b.caller), 'unauthorized');
  t.equal(await check(kit, bob.caller), 'authorized', "another operator's sessions are untouched");
  const [row] = await kit.raw.queryAudit({ action: 'session.logout_all', limit: 5 });
  t.match(row, { outcome: 'success', sessionId: a.id });
  t.same(row!.detail, { ended: 2 });
  await t.rejects(kit.sessions.logoutAll(a.caller, kit.log), refusal('unauthenticated'));
});

t.test("list shows the operator's active sessions, oldest first, marking the caller's, and no secret", async (t) => {
  const kit = await buildKit(t);
  await kit.openSession(ALICE.email, { mac: '00:00:00:00:00:09' }); // will be idle
  kit.clock.now = T0 + DAY;
  const a = await kit.openSession(ALICE.email, { mac: '00:00:00:00:00:01', device: 'laptop' });
  kit.clock.now += SECOND;
  const b = await kit.openSession(ALICE.email, { mac: '00:00:00:00:00:02', ip: '192.0.2.22' });
  const revoked = await kit.openSession(ALICE.email, { mac: '00:00:00:00:00:03' });
  await kit.raw.revokeSession(revoked.id, kit.clock.now, 'logout');
  await kit.openSession(BOB.email);

  t.same(await kit.sessions.list(b.caller, kit.log), [
    { id: a.id, mac: '00:00:00:00:00:01', ip: IP, device: 'laptop', createdAt: T0 + DAY, lastSeenAt: T0 + DAY, current: false },
    { id: b.id, mac: '00:00:00:00:00:02', ip: '192.0.2.22', createdAt: T0 + DAY + SECOND, lastSeenAt: T0 + DAY + SECOND, current: true },
  ]);
  await t.rejects(kit.sessions.list({ ...b.caller, seenIp: '192.0.2.23' }, kit.log), refusal('unauthenticated'), 'from another address');
});
