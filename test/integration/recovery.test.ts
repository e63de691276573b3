import t, { type Test } from 'tap';
import { ALICE, MAC, startHarness, type Harness } from '../helpers/harness.js';
import { enrolTotp, loginWithTotp, mailMatching, recoveryPasscode, type Enrolled } from '../helpers/totp.js';
import type { HellwallClient } from '../../src/client/client.js';

// Self-service recovery over the real wire [P-4.17]–[P-4.20]: each flow works, and none gets past a
// factor the operator still has (ASVS 6.4.3). Mails are read from the SMTP sink.

const STEP = 30_000;
const NEW = 'a brand new passphrase for spring';
const NEW_MAC = '00:1a:2b:3c:4d:5f';
const CONFIG = { alerts: { newDevice: false } };

async function enrolled(t: Test, config: Record<string, unknown> = {}): Promise<{ h: Harness; client: HellwallClient; token: string; totp: Enrolled }> {
  const h = await startHarness(t, { config: { ...CONFIG, ...config } });
  const client = await h.connect();
  const { token } = await h.login(client);
  const totp = await enrolTotp(h, client, token);
  h.clock.advance(STEP);
  return { h, client, token, totp };
}

t.test('forgotten password with a TOTP code: new password, every session ends, the owner is told', async (t) => {
  const { h, client, token, totp } = await enrolled(t);
  const passcode = await recoveryPasscode(h, client, ALICE.email);
  const since = h.smtp.messages.length;
  const res = await client.send({ code: 26, email: ALICE.email, passcode, mac: MAC, newPassword: NEW, totp: totp.code(), clientTime: h.clock.now });
  t.match(res, { status: 'ok', sessionsEnded: 1 });
  t.match(await client.check({ token, mac: MAC, request: 'x.read' }), { status: 'unauthorized' }, 'the old session ended');
  t.match((await mailMatching(h, ALICE.email, since, /password/i)).raw, /password/i, 'the owner is told');
  h.clock.advance(STEP);
  t.match(await loginWithTotp(h, client, totp.code(), { ...ALICE, password: NEW }), { status: 'ok' }, 'the new password (and the code) log in');
  t.match((await h.auditRows({ action: 'recovery.password' }))[0], { outcome: 'success', detail: { with: 'totp' } });
  t.match(await client.send({ code: 26, email: ALICE.email, passcode, mac: MAC, newPassword: NEW + '!', totp: totp.code() }), { status: 'error', error: 'E_AUTH_FAILED' }, 'the recovery passcode worked once');
});

t.test('forgotten password with a recovery code: each code works once, and its use is mailed and audited', async (t) => {
  const { h, client, totp } = await enrolled(t);
  const code = totp.recoveryCodes[3]!;
  const since = h.smtp.messages.length;
  let passcode = await recoveryPasscode(h, client, ALICE.email);
  t.match(await client.send({ code: 26, email: ALICE.email, passcode, mac: MAC, newPassword: NEW, recoveryCode: code.toLowerCase() }), { status: 'ok' });
  t.match((await mailMatching(h, ALICE.email, since, /recovery code/i)).raw, /9 /, 'the alert says how many are left');
  t.match((await h.auditRows({ action: 'recovery_code.use' }))[0], { outcome: 'success', detail: { flow: 'recovery.password', remaining: 9 } });
  passcode = await recoveryPasscode(h, client, ALICE.email);
  t.match(await client.send({ code: 26, email: ALICE.email, passcode, mac: MAC, newPassword: NEW + ' again', recoveryCode: code }), { status: 'error', error: 'E_AUTH_FAILED' }, 'not twice');
});

t.test('forgotten password cannot get past the authenticator', async (t) => {
  const { h, client, totp } = await enrolled(t);
  const passcode = await recoveryPasscode(h, client, ALICE.email);
  const wrong = totp.code() === '000000' ? '000001' : '000000';
  t.match(await client.send({ code: 26, email: ALICE.email, passcode, mac: MAC, newPassword: NEW }), { status: 'error', error: 'E_AUTH_FAILED' }, 'the passcode alone');
  t.match(await client.send({ code: 26, email: ALICE.email, passcode, mac: MAC, newPassword: NEW, totp: wrong }), { status: 'error', error: 'E_AUTH_FAILED' }, 'a wrong code');
  t.match(await client.send({ code: 26, email: ALICE.email, passcode, mac: MAC, newPassword: NEW, recoveryCode: 'AAAAA-BBBBB' }), { status: 'error', error: 'E_AUTH_FAILED' }, 'a made-up recovery code');
  t.match(await client.send({ code: 26, email: ALICE.email, passcode, mac: MAC, newPassword: 'password1', totp: totp.code() }), { status: 'error', error: 'E_INVALID' }, 'the password policy applies');
  h.clock.advance(STEP);
  t.match(await loginWithTotp(h, client, totp.code()), { status: 'ok' }, 'the old password still works');
});

t.test('an account without an authenticator cannot reset its password by mail alone', async (t) => {
  const h = await startHarness(t, { config: CONFIG });
  const client = await h.connect();
  const { token } = await h.login(client);
  const passcode = await recoveryPasscode(h, client, ALICE.email);
  t.match(await client.send({ code: 26, email: ALICE.email, passcode, mac: MAC, newPassword: NEW, recoveryCode: 'AAAAA-BBBBB' }), { status: 'error', error: 'E_AUTH_FAILED' });
  t.match(await client.check({ token, mac: MAC, request: 'x.read' }), { status: 'authorized' }, 'nothing changed');
  t.match((await h.auditRows({ action: 'recovery.password', outcome: 'failure' }))[0], { detail: { reason: 'no-totp' } });
});

t.test('recovery.request answers alike for unknown accounts and mails nothing', async (t) => {
  const h = await startHarness(t, { config: CONFIG });
  const client = await h.connect();
  const known = await client.send({ code: 25, email: ALICE.email, mac: MAC });
  const unknown = await client.send({ code: 25, email: 'nobody@example.com', mac: MAC });
  t.same({ ...unknown, id: undefined }, { ...known, id: undefined }, 'the same answer');
  await h.app.mail.drain();
  t.notOk(h.smtp.messages.some((m) => m.to.includes('nobody@example.com')), 'no mail to an unknown address');
  t.match((await h.auditRows({ action: 'recovery.request', outcome: 'failure' }))[0], { detail: { reason: 'unknown-account' } });
  t.match(await client.send({ code: 25, email: ALICE.email, mac: MAC, clientTime: h.clock.now - 3_600_000 }), { status: 'error', error: 'E_CLOCK_SKEW' }, 'a client an hour behind is told');
});

t.test('lost authenticator: passcode, password and a recovery code remove it; the next login must enrol again', async (t) => {
  const { h, client, token, totp } = await enrolled(t);
  const passcode = await recoveryPasscode(h, client, ALICE.email);
  t.match(await client.send({ code: 27, email: ALICE.email, passcode, mac: MAC, password: 'not my password', recoveryCode: totp.recoveryCodes[0] }), { status: 'error', error: 'E_AUTH_FAILED' }, 'the password is still needed');
  const since = h.smtp.messages.length;
  t.match(await client.send({ code: 27, email: ALICE.email, passcode, mac: MAC, password: ALICE.password, recoveryCode: totp.recoveryCodes[0], clientTime: h.clock.now }), { status: 'ok', sessionsEnded: 1 });
  t.match(await client.check({ token, mac: MAC, request: 'x.read' }), { status: 'unauthorized' }, 'sessions ended');
  t.match((await mailMatching(h, ALICE.email, since, /authenticator/i)).raw, /removed/i, 'the owner is told');
  const next = await loginWithTotp(h, client, undefined);
  t.match(next, { status: 'ok', scope: 'enroll', enroll: ['totp'] }, 're-enrolment required at the next login');
  t.equal(await h.app.store.countRecoveryCodes(1), 0, 'the old recovery codes are gone with it');
  const again = await enrolTotp(h, client, next.token as string);
  t.equal(again.recoveryCodes.length, 10, 'and a new enrolment works');
});

t.test('new device: passcode, password and TOTP register the MAC; the old device\'s sessions end', async (t) => {
  const { h, client, token, totp } = await enrolled(t);
  const passcode = await recoveryPasscode(h, client, ALICE.email, NEW_MAC);
  t.match(await client.send({ code: 28, email: ALICE.email, passcode, mac: NEW_MAC, password: ALICE.password, totp: '000000' === totp.code() ? '000001' : '000000' }), { status: 'error', error: 'E_AUTH_FAILED' }, 'not without the authenticator');
  t.match(await client.send({ code: 28, email: ALICE.email, passcode, mac: MAC, password: ALICE.password, totp: totp.code() }), { status: 'error', error: 'E_AUTH_FAILED' }, 'the passcode is bound to the device that asked');
  t.match(await client.send({ code: 28, email: ALICE.email, passcode, mac: NEW_MAC, password: ALICE.password, totp: totp.code(), oldMac: MAC, name: 'new laptop', clientTime: h.clock.now }), { status: 'ok', sessionsEnded: 1 });
  t.match(await client.check({ token, mac: MAC, request: 'x.read' }), { status: 'unauthorized' }, 'the old device is out');
  t.match(await h.app.store.getDevice(1, NEW_MAC), { mac: NEW_MAC }, 'the new device is known');
  t.match((await h.auditRows({ action: 'recovery.device' }))[0], { outcome: 'success', mac: NEW_MAC, detail: { oldMac: MAC } });
});

t.test('recovery attempts share the second-factor limits and are audited', async (t) => {
  const { h, client } = await enrolled(t, { limits: { freeFailures: 3 } });
  const passcode = await recoveryPasscode(h, client, ALICE.email).catch(() => 'AAAAAA');
  const answers = [];
  for (let i = 0; i < 4; i++) answers.push(await client.send({ code: 26, email: ALICE.email, passcode, mac: MAC, newPassword: NEW, totp: String(100000 + i) }));
  t.ok(answers.some((a) => a.status === 'error' && a.error === 'E_AUTH_FAILED'), 'wrong answers are refused');
  t.ok(answers.some((a) => a.status === 'error' && a.error === 'E_RATE_LIMITED'), 'and run into the limit');
  t.ok((await h.auditRows({ action: 'recovery.password' })).length >= 1, 'audited');
});
