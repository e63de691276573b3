import t from 'tap';
import { Alerts, ALERT_NAMES, enabledAlerts } from '../../src/services/alerts.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { ALICE, BOB, buildKit, IP, MAC, refusal, SECOND, T0 } from '../helpers/services.js';

const SUBJECTS: Record<(typeof ALERT_NAMES)[number], RegExp> = {
  'new-device': /New sign-in/,
  'password-changed': /password was changed/,
  'totp-enrolled': /authenticator app was added/,
  'totp-removed': /authenticator app was removed/,
  'recovery-code-used': /recovery code .* was used/,
  'account-locked': /locked/,
  'session-reuse': /used twice/,
};

t.test('each alert is mailed after the current turn, never before, and audited when delivered', async (t) => {
  const kit = await buildKit(t, { config: { alerts: {} } });
  const alice = kit.users[ALICE.email]!;
  for (const name of ALERT_NAMES) kit.alerts.send(name, alice, { ip: IP, mac: MAC, until: T0 + 900 * SECOND, remaining: 9, sessionId: 7, newDevice: true });
  t.equal(kit.mailer.sent.length, 0, 'nothing sent synchronously: the answer goes first');
  await kit.mail.drain();
  t.equal(kit.mailer.sent.length, ALERT_NAMES.length);
  for (const name of ALERT_NAMES) {
    const mail = kit.mailer.sent.find((m) => SUBJECTS[name].test(m.subject));
    t.ok(mail, `${name} mailed`);
    t.equal(mail?.to, ALICE.email);
    t.match(mail?.text, /If /, `${name} says what to do`);
  }
  t.match(kit.mailer.sent.find((m) => /New sign-in/.test(m.subject))!.text, `device ${MAC}`);
  t.match(kit.mailer.sent.find((m) => /recovery code/.test(m.subject))!.text, '9 unused recovery code(s) remain');
  t.match(kit.mailer.sent.find((m) => /locked/.test(m.subject))!.text, `until ${new Date(T0 + 900 * SECOND).toISOString()}`);
  const rows = await kit.auditRows({ action: 'alert.*' });
  t.same(rows.map((r) => r.action).sort(), ALERT_NAMES.map((n) => `alert.${n.replace(/-/g, '_')}`).sort(), 'one audit row per alert');
  t.ok(rows.every((r) => r.outcome === 'success' && r.userId === alice.id && r.ip === IP && r.mac === MAC));
  t.match(rows.find((r) => r.action === 'alert.recovery_code_used')!.detail, { remaining: 9, attempts: 1 });
});

t.test('an alert that cannot be delivered is audited as a failure', async (t) => {
  const kit = await buildKit(t, { config: { alerts: {} }, mail: { attempts: 2, retryDelayMs: 1 } });
  kit.mailer.fail = 2;
  kit.alerts.send('totp-enrolled', kit.users[ALICE.email]!, { ip: IP });
  // The queue's retry delay does not hold the process open by itself (MailQueue.drain).
  const alive = setInterval(() => undefined, 1000);
  await kit.mail.drain();
  clearInterval(alive);
  const [row] = await kit.auditRows({ action: 'alert.totp_enrolled' });
  t.match(row, { outcome: 'failure', detail: { attempts: 2, error: /421/ } });
});

t.test('an alert switched off by its option or by the list sends and audits nothing', async (t) => {
  const kit = await buildKit(t, { config: { alerts: { totpEnrolled: false, disabled: 'session-reuse, recovery-code-used' } } });
  const alice = kit.users[ALICE.email]!;
  for (const name of ['totp-enrolled', 'session-reuse', 'recovery-code-used'] as const) {
    t.notOk(kit.alerts.enabled(name), `${name} is off`);
    kit.alerts.send(name, alice, {});
  }
  kit.alerts.send('totp-removed', alice, {});
  await kit.mail.drain();
  t.equal(kit.mailer.sent.length, 1, 'only the alert still on');
  t.match(kit.mailer.sent[0]!.subject, /removed/);
  t.same((await kit.auditRows({ action: 'alert.*' })).map((r) => r.action), ['alert.totp_removed']);
});

t.test('`all` switches every alert off; an unknown name is a configuration error', async (t) => {
  const base = loadConfig({}, {}).alerts;
  t.equal(enabledAlerts({ ...base, disabled: 'all' }).size, 0);
  t.equal(enabledAlerts(base).size, ALERT_NAMES.length, 'all on by default');
  t.throws(() => enabledAlerts({ ...base, disabled: 'new-device,no-such-alert' }), ConfigError);
  t.throws(() => enabledAlerts({ ...base, disabled: 'no-such-alert' }), { message: /unknown alert "no-such-alert"/ });
});

t.test('the lockout alert goes to the owner of an existing account only', async (t) => {
  const kit = await buildKit(t, { config: { alerts: {} } });
  kit.alerts.accountLocked('nobody@example.com', T0 + 60 * SECOND, IP);
  kit.alerts.accountLocked(BOB.email, T0 + 60 * SECOND, IP);
  await kit.mail.drain();
  t.same(kit.mailer.sent.map((m) => m.to), [BOB.email]);
  t.match(kit.mailer.sent[0]!.text, `IP address ${IP}`);
});

t.test('the lockout firing in the throttle mails the owner once', async (t) => {
  const kit = await buildKit(t, { config: { alerts: {}, limits: { lockoutFailures: 3, freeFailures: 100 } } });
  const req = () => kit.passcodes.request({ email: BOB.email, password: 'wrong', mac: MAC, reportedIp: null, seenIp: IP }, kit.log);
  for (let i = 0; i < 3; i++) await req();
  await t.rejects(req(), refusal('rate-limited'), 'the account is locked');
  await kit.mail.drain();
  const locked = kit.mailer.sent.filter((m) => /locked/.test(m.subject));
  t.equal(locked.length, 1, 'one alert for the lock, none for the refused attempt');
  t.equal(locked[0]!.to, BOB.email);
  t.equal((await kit.auditRows({ action: 'alert.account_locked' })).length, 1);
});

t.test('a password changed by an administrator mails the owner', async (t) => {
  const kit = await buildKit(t, { config: { alerts: {} } });
  await kit.admin.resetPassword({ name: 'cli:test', auditReads: false }, BOB.email, 'a whole new passphrase here');
  await kit.mail.drain();
  t.equal(kit.mailer.sent.length, 1);
  t.match(kit.mailer.sent[0], { to: BOB.email, subject: /password was changed/, text: /by an administrator/ });
});

t.test('reuse of a rotated-out token mails the owner (reuse path only)', async (t) => {
  const kit = await buildKit(t, { config: { alerts: {} } });
  const s = await kit.openSession(ALICE.email);
  kit.clock.now += kit.config.tokens.ttlSeconds * SECOND + 1;
  const renewed = await kit.tokens.check({ ...s.caller, request: 'x' }, kit.log);
  t.equal(renewed.status, 'renew');
  await kit.mail.drain();
  t.equal(kit.mailer.sent.length, 0, 'a renewal mails nothing');
  kit.clock.now += (kit.config.tokens.graceSeconds + 1) * SECOND;
  t.equal((await kit.tokens.check({ ...s.caller, request: 'x' }, kit.log)).status, 'unauthorized');
  await kit.mail.drain();
  t.equal(kit.mailer.sent.length, 1);
  t.match(kit.mailer.sent[0], { to: ALICE.email, subject: /used twice/, text: new RegExp(`session ${s.id}`) });
});

t.test('Alerts reads its switches once, at construction', async (t) => {
  const kit = await buildKit(t, { config: { alerts: {} } });
  const alerts = new Alerts({ config: { alerts: { ...kit.config.alerts, newDevice: false } }, mail: kit.mail, audit: kit.audit, clock: () => T0, log: kit.log, store: kit.raw });
  t.notOk(alerts.enabled('new-device'));
  t.ok(alerts.enabled('password-changed'));
});
