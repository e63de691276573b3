import t from 'tap';
import { ServiceError } from '../../src/errors.js';
import { RateLimited } from '../../src/services/throttle.js';
import { isWellFormedToken } from '../../src/primitives/tokens.js';
import { ALICE, BOB, buildKit, IP, MAC, SECOND, T0, type Kit, type Person, refusal } from '../helpers/services.js';

const request = (kit: Kit, who: { email: string; password: string }, o: { mac?: string; ip?: string } = {}) =>
  kit.passcodes.request({ email: who.email, password: who.password, mac: o.mac ?? MAC, reportedIp: null, seenIp: o.ip ?? IP }, kit.log);

const auth = (kit: Kit, who: Person, passcode: string, o: Partial<{ email: string; phone: string; password: string; mac: string; ip: string }> = {}) =>
  kit.passcodes.authenticate(
    { email: o.email ?? who.email, phone: o.phone ?? who.phone, password: o.password ?? who.password, passcode, mac: o.mac ?? MAC, seenIp: o.ip ?? IP },
    kit.log,
  );

/** The reason of each failed login, oldest first. */
const loginFailures = async (kit: Kit) => (await kit.auditRows({ action: 'login', outcome: 'failure' })).reverse().map((r) => r.detail?.reason);

const AUTH_FAILED = { name: 'ServiceError', kind: 'auth-failed', message: 'authentication failed' };

t.test('passcode.request answers alike for unknown, disabled, wrong and right; only the right one mails, after the answer', async (t) => {
  const kit = await buildKit(t);
  await kit.raw.setUserDisabled(kit.users[BOB.email]!.id, true);
  const answers = [
    await request(kit, { email: 'nobody@example.com', password: ALICE.password }),
    await request(kit, BOB),
    await request(kit, { email: ALICE.email, password: 'not the password at all' }),
  ];
  const right = await request(kit, { email: ' Alice@Example.com ', password: ALICE.password }, { mac: '00-1A-2B-3C-4D-5E' });
  t.same([...answers, right], Array(4).fill({ expiresInSeconds: 180 }), 'four identical answers');
  t.equal(kit.mailer.sent.length, 0, 'nothing mailed before the answer');
  t.equal(await kit.raw.getPasscode(kit.users[ALICE.email]!.id), undefined, 'nothing stored before the answer');

  await kit.mail.drain();
  t.same(kit.mailer.sent.map((m) => [m.to, m.subject]), [[ALICE.email, 'Your Hellwall passcode']], 'one mail, to the right account only');
  t.match(kit.mailer.sent[0]!.text, `Requested from IP address ${IP}, device MAC ${MAC}.`);
  const pending = (await kit.raw.getPasscode(kit.users[ALICE.email]!.id))!;
  t.match(pending, { mac: MAC, seenIp: IP, reportedIp: null, createdAt: T0, expiresAt: T0 + 180 * SECOND, attempts: 0, keyId: 1 });
  t.equal(await kit.raw.getPasscode(kit.users[BOB.email]!.id), undefined);

  const rows = (await kit.auditRows({ action: 'passcode.*' })).reverse();
  t.same(
    rows.map((r) => [r.action, r.outcome, r.email, r.detail?.reason ?? null]),
    [
      ['passcode.request', 'failure', 'nobody@example.com', 'unknown-account'],
      ['passcode.request', 'failure', BOB.email, 'disabled'],
      ['passcode.request', 'failure', ALICE.email, 'bad-password'],
      ['passcode.request', 'success', ALICE.email, null],
      ['passcode.sent', 'success', ALICE.email, null],
    ],
  );
  t.same(rows[4]!.detail, { attempts: 1 });
  t.notOk(JSON.stringify(rows).includes(kit.mailer.passcodeFor(ALICE.email)), 'the passcode is in no audit row');
});

t.test('a passcode opens one session, once', async (t) => {
  const kit = await buildKit(t);
  await request(kit, ALICE);
  await kit.mail.drain();
  const passcode = kit.mailer.passcodeFor(ALICE.email);
  const login = await auth(kit, ALICE, passcode.toLowerCase());
  t.ok(isWellFormedToken(login.token));
  t.same(login, {
    token: login.token,
    expiresAt: T0 + 3600 * SECOND,
    renewableUntil: T0 + 2_592_000 * SECOND,
    idleTimeoutSeconds: 86_400,
    user: { email: ALICE.email, role: 'user' },
  });
  const check = await kit.tokens.check({ token: login.token, mac: MAC, seenIp: IP, request: 'x' }, kit.log);
  t.equal(check.status, 'authorized', 'the token checks, bound to this device and address');
  t.equal(await kit.raw.getPasscode(kit.users[ALICE.email]!.id), undefined, 'the passcode is consumed');

  await t.rejects(auth(kit, ALICE, passcode), AUTH_FAILED, 'the same passcode again');
  t.same(await loginFailures(kit), ['no-passcode']);
  const [ok] = await kit.auditRows({ action: 'login', outcome: 'success' });
  t.match(ok, { userId: kit.users[ALICE.email]!.id, ip: IP, mac: MAC, at: T0 });
  t.same(ok!.detail, { device: null, evicted: 0 });
  t.equal((await kit.raw.listOpenSessions(kit.users[ALICE.email]!.id)).length, 1);
});

t.test('every factor must match, and the answer never says which one did not', async (t) => {
  const kit = await buildKit(t, { config: { limits: { freeFailures: 50 } } });
  await request(kit, ALICE);
  await kit.mail.drain();
  const passcode = kit.mailer.passcodeFor(ALICE.email);
  const wrong = passcode === 'AAAAAA' ? 'BBBBBB' : 'AAAAAA';
  const errors: unknown[] = [];
  for (const attempt of [
    () => auth(kit, ALICE, passcode, { phone: '+15559999' }),
    () => auth(kit, ALICE, passcode, { mac: '00:00:00:00:00:01' }),
    () => auth(kit, ALICE, passcode, { password: 'another long password' }),
    () => auth(kit, ALICE, wrong),
    () => auth(kit, ALICE, passcode, { email: 'nobody@example.com' }),
  ]) {
    errors.push(await attempt().catch((err: unknown) => err));
  }
  for (const err of errors) t.match(err, { ...AUTH_FAILED, retryAfterSeconds: undefined });
  t.ok(errors.every((e) => e instanceof ServiceError && Object.keys(e).join() === Object.keys(errors[0]!).join()), 'identical errors');
  t.same(await loginFailures(kit), ['phone', 'mac', 'password', 'passcode', 'unknown-account'], 'the audit trail says which');
  t.equal((await kit.raw.getPasscode(kit.users[ALICE.email]!.id))!.attempts, 4, 'each failure against the pending passcode counts');
  t.equal((await auth(kit, ALICE, passcode)).user.email, ALICE.email, 'below maxAttempts the passcode still works');
});

t.test('maxAttempts failures void the passcode; so does its expiry', async (t) => {
  const kit = await buildKit(t, { config: { passcodes: { maxAttempts: 3 }, limits: { freeFailures: 50 } } });
  const id = kit.users[ALICE.email]!.id;
  await request(kit, ALICE);
  await kit.mail.drain();
  const passcode = kit.mailer.passcodeFor(ALICE.email);
  for (let i = 1; i <= 2; i++) {
    await t.rejects(auth(kit, ALICE, passcode, { phone: '+15559999' }), AUTH_FAILED);
    t.equal((await kit.raw.getPasscode(id))!.attempts, i);
  }
  await t.rejects(auth(kit, ALICE, passcode, { phone: '+15559999' }), AUTH_FAILED);
  t.equal(await kit.raw.getPasscode(id), undefined, 'the third failure deletes it');
  await t.rejects(auth(kit, ALICE, passcode), AUTH_FAILED, 'the right passcode is now refused');
  t.same(await loginFailures(kit), ['phone', 'phone', 'phone,passcode-void', 'no-passcode']);

  kit.clock.now += SECOND;
  await request(kit, ALICE);
  await kit.mail.drain();
  const fresh = kit.mailer.passcodeFor(ALICE.email);
  kit.clock.now += 180 * SECOND;
  await t.rejects(auth(kit, ALICE, fresh), AUTH_FAILED, 'at its expiry');
  t.equal(await kit.raw.getPasscode(id), undefined, 'an expired passcode is deleted by the attempt');
  t.equal((await loginFailures(kit)).at(-1), 'passcode-expired');
});

t.test('the session cap ends the oldest sessions in the login transaction; a failed login ends none', async (t) => {
  const kit = await buildKit(t, { config: { sessions: { maxPerUser: 2 } } });
  const first = await kit.login(ALICE, { mac: '00:00:00:00:00:01' });
  kit.clock.now += SECOND;
  const second = await kit.login(ALICE, { mac: '00:00:00:00:00:02' });
  kit.clock.now += SECOND;
  await request(kit, ALICE);
  await kit.mail.drain();
  await t.rejects(auth(kit, ALICE, kit.mailer.passcodeFor(ALICE.email), { phone: '+15559999' }), AUTH_FAILED);
  t.equal((await kit.raw.findSessionById(first.id))!.revokedAt, null, 'a failed login evicts nothing');

  const third = await kit.login(ALICE, { mac: '00:00:00:00:00:03' });
  const open = await kit.raw.listOpenSessions(kit.users[ALICE.email]!.id);
  t.same(open.map((s) => s.id), [second.id, third.id], 'the second and the new one remain');
  t.match(await kit.raw.findSessionById(first.id), { revokedAt: T0 + 2 * SECOND, revokeReason: 'evicted' });
  t.same(await kit.tokens.check({ ...first.caller, request: 'x' }, kit.log), { status: 'unauthorized' }, 'the evicted token is refused');
  t.equal((await kit.tokens.check({ ...third.caller, request: 'x' }, kit.log)).status, 'authorized');

  const [evict] = await kit.auditRows({ action: 'session.evict' });
  t.match(evict, { outcome: 'success', sessionId: first.id, mac: '00:00:00:00:00:01', at: T0 + 2 * SECOND });
  t.same(evict!.detail, { by: third.id, maxPerUser: 2, createdAt: T0 });
  const [login] = await kit.auditRows({ action: 'login', outcome: 'success' });
  t.same(login!.detail, { device: null, evicted: 1 });
});

t.test('a throttled attempt tries nothing; a completed login releases what was counted', async (t) => {
  const kit = await buildKit(t, { config: { limits: { freeFailures: 2 } } });
  const id = kit.users[ALICE.email]!.id;
  await request(kit, ALICE); // counted: 1
  await kit.mail.drain();
  const passcode = kit.mailer.passcodeFor(ALICE.email);
  await t.rejects(auth(kit, ALICE, passcode, { phone: '+15559999' }), AUTH_FAILED); // 2: the next must wait 1 s

  const refused = await auth(kit, ALICE, passcode).catch((err: unknown) => err);
  t.ok(refused instanceof RateLimited);
  t.match(refused, refusal('rate-limited', { retryAfterSeconds: 1, scope: 'account' }));
  t.equal((await kit.raw.getPasscode(id))!.attempts, 1, 'the refused attempt was not tried against the passcode');
  t.equal((await kit.auditRows({ action: 'login', outcome: 'success' })).length, 0);
  const [denied] = await kit.auditRows({ action: 'login', outcome: 'denied' });
  t.same(denied!.detail, { reason: 'rate-limited', scope: 'account' });

  kit.clock.now += SECOND;
  t.equal((await auth(kit, ALICE, passcode)).user.email, ALICE.email, 'after the wait the right factors log in');
  for (let i = 0; i < 2; i++) t.same(await request(kit, ALICE), { expiresInSeconds: 180 }, `released: attempt ${i + 1} goes at once`);
  await t.rejects(request(kit, ALICE), refusal('rate-limited'), 'and the count starts over');
  t.same(await request(kit, ALICE, { ip: '192.0.2.200' }), { expiresInSeconds: 180 }, 'another address has its own pair count');
});

t.test('beyond passcodesPerHour a right password still gets the same answer, but no passcode', async (t) => {
  const kit = await buildKit(t, { config: { limits: { passcodesPerHour: 2, freeFailures: 50 } } });
  const answers = [];
  for (let i = 0; i < 3; i++) answers.push(await request(kit, ALICE));
  await kit.mail.drain();
  t.same(answers, Array(3).fill({ expiresInSeconds: 180 }));
  t.equal(kit.mailer.sent.length, 2, 'two passcodes mailed');
  const [capped] = await kit.auditRows({ action: 'passcode.request', outcome: 'denied' });
  t.same(capped!.detail, { reason: 'passcodes-per-hour' });
  t.equal((await auth(kit, ALICE, kit.mailer.passcodeFor(ALICE.email))).user.email, ALICE.email, 'the last mailed one is the pending one');
  kit.clock.now += 3600 * SECOND;
  await request(kit, ALICE);
  await kit.mail.drain();
  t.equal(kit.mailer.sent.length, 3, 'an hour later, one more');
});
