import t from 'tap';
import type { Caller } from '../../src/services/session-service.js';
import type { Store } from '../../src/store/store.js';
import { ALICE, BOB, buildKit, IP, MAC, T0, type Kit, refusal } from '../helpers/services.js';

const NEXT = 'a brand new long passphrase';
const change = (kit: Kit, c: Caller, current: string, next = NEXT) => kit.account.changePassword(c, current, next, kit.log);
const status = async (kit: Kit, c: Caller) => (await kit.tokens.check({ ...c, request: 'x' }, kit.log)).status;
const hashOf = async (kit: Kit, email: string) => (await kit.raw.findUserByEmail(email))!.passwordHash;

t.test('a password change keeps the caller session, ends the others and the pending passcode, and tells the owner', async (t) => {
  const kit = await buildKit(t);
  const id = kit.users[ALICE.email]!.id;
  const a = await kit.openSession(ALICE.email, { mac: '00:00:00:00:00:01' });
  const b = await kit.openSession(ALICE.email, { mac: '00:00:00:00:00:02' });
  const c = await kit.openSession(ALICE.email, { mac: '00:00:00:00:00:03' });
  const bob = await kit.openSession(BOB.email);
  t.equal(await status(kit, b.caller), 'authorized', 'b is cached');
  await kit.passcodes.request({ email: ALICE.email, password: ALICE.password, mac: MAC, reportedIp: null, seenIp: IP }, kit.log);
  await kit.mail.drain();
  t.ok(await kit.raw.getPasscode(id), 'a passcode is pending');
  kit.mailer.sent.length = 0;

  t.equal(await change(kit, a.caller, ALICE.password), 2, 'two other sessions ended');
  t.equal(await status(kit, a.caller), 'authorized', 'the caller goes on');
  for (const s of [b, c]) t.match(await kit.raw.findSessionById(s.id), { revokedAt: T0, revokeReason: 'password-changed' });
  t.equal(await status(kit, b.caller), 'unauthorized', 'a cached session of the operator is refused at once');
  t.equal(await status(kit, bob.caller), 'authorized', "another operator's session is untouched");
  t.equal(await kit.raw.getPasscode(id), undefined, 'the pending passcode is void');
  const hash = await hashOf(kit, ALICE.email);
  t.ok(await kit.hasher.verify(hash, NEXT), 'the new password is stored');
  t.notOk(await kit.hasher.verify(hash, ALICE.password));

  await kit.mail.drain();
  t.equal(kit.mailer.sent.length, 1);
  t.match(kit.mailer.sent[0], { to: ALICE.email, subject: 'Your Hellwall password was changed' });
  t.match(kit.mailer.sent[0]!.text, `at ${new Date(T0).toISOString()} from IP address ${IP}`);
  t.notOk(kit.mailer.sent[0]!.text.includes(NEXT), 'never the password');

  const [row] = await kit.raw.queryAudit({ action: 'password.change', limit: 5 });
  t.match(row, { outcome: 'success', userId: id, sessionId: a.id, ip: IP });
  t.same(row!.detail, { sessionsEnded: 2 });
  t.equal((await kit.login({ ...ALICE, password: NEXT }, { mac: '00:00:00:00:00:04' })).user.email, ALICE.email, 'the new password logs in');
});

t.test('a wrong current password is auth-failed, audited, and changes nothing', async (t) => {
  const kit = await buildKit(t);
  const a = await kit.openSession(ALICE.email, { mac: '00:00:00:00:00:01' });
  const b = await kit.openSession(ALICE.email, { mac: '00:00:00:00:00:02' });
  const hash = await hashOf(kit, ALICE.email);
  await t.rejects(change(kit, a.caller, 'not the current password'), { name: 'ServiceError', kind: 'auth-failed', message: 'authentication failed' });
  t.equal(await hashOf(kit, ALICE.email), hash);
  t.equal(await status(kit, b.caller), 'authorized');
  await kit.mail.drain();
  t.equal(kit.mailer.sent.length, 0, 'no mail');
  const rows = await kit.auditRows({ action: 'password.change' });
  t.same(rows.map((r) => [r.outcome, r.sessionId, r.detail]), [['failure', a.id, { reason: 'wrong-password' }]]);
});

t.test('a new password the policy refuses is invalid, and changes nothing', async (t) => {
  const kit = await buildKit(t);
  const a = await kit.openSession(ALICE.email);
  const hash = await hashOf(kit, ALICE.email);
  for (const [next, message] of [
    ['short', 'password must be at least 8 characters (12 or more recommended)'],
    ['password123', 'password is on a list of commonly used passwords; choose another'],
    [ALICE.email.toUpperCase(), "password must not be the account's email address or the service's name"],
  ]) {
    await t.rejects(change(kit, a.caller, ALICE.password, next), refusal('invalid', { message }), next);
  }
  t.equal(await hashOf(kit, ALICE.email), hash);
  t.equal((await kit.auditRows({ action: 'password.change', outcome: 'success' })).length, 0);
});

t.test('the caller must authenticate, and attempts are throttled like any password attempt', async (t) => {
  const kit = await buildKit(t, { config: { limits: { freeFailures: 2 } } });
  const a = await kit.openSession(ALICE.email);
  await t.rejects(change(kit, { ...a.caller, token: 'x' }, ALICE.password), refusal('unauthenticated'));
  for (let i = 0; i < 2; i++) await t.rejects(change(kit, a.caller, `wrong guess number ${i}`), refusal('auth-failed'));
  await t.rejects(change(kit, a.caller, ALICE.password), refusal('rate-limited', { retryAfterSeconds: 1 }), 'even the right one waits');
  const denied = await kit.auditRows({ action: 'password.change', outcome: 'denied' });
  t.same(denied.map((r) => r.detail), [{ reason: 'rate-limited' }]);
  kit.clock.now += 1000;
  t.equal(await change(kit, a.caller, ALICE.password), 0, 'after the wait it goes through');
});

t.test('a password changed by someone else while this one was hashing wins: conflict, nothing ended', async (t) => {
  const hook = { afterRead: undefined as undefined | (() => Promise<unknown>) };
  const kit = await buildKit(t, {
    wrap: (store) =>
      new Proxy(store, {
        get: (target, prop, receiver) =>
          prop === 'findUserById'
            ? async (id: number) => {
                const user = await target.findUserById(id);
                await hook.afterRead?.();
                return user;
              }
            : (Reflect.get(target, prop, receiver) as unknown),
      }) as Store,
  });
  const a = await kit.openSession(ALICE.email, { mac: '00:00:00:00:00:01' });
  const b = await kit.openSession(ALICE.email, { mac: '00:00:00:00:00:02' });
  const reset = await kit.hasher.hash('set by an administrator');
  hook.afterRead = () => kit.raw.setPasswordHash(kit.users[ALICE.email]!.id, reset);
  await t.rejects(change(kit, a.caller, ALICE.password), refusal('conflict', { message: 'the password was changed meanwhile; log in again' }));
  t.equal(await hashOf(kit, ALICE.email), reset, "the administrator's password stands");
  t.equal((await kit.raw.findSessionById(b.id))!.revokedAt, null);
  await kit.mail.drain();
  t.equal(kit.mailer.sent.length, 0);
});
