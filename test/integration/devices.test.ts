import t from 'tap';
import type { HellwallClient } from '../../src/client/client.js';
import { ALICE, MAC, startHarness, type Harness } from '../helpers/harness.js';
import type { ReceivedMail } from '../helpers/smtp-sink.js';

// Issue 13 items 4–6 over real TLS with a real SMTP server: known devices and the new-sign-in mail,
// the registered-devices policy, the security alerts and their switches, and the clock-skew rule.
// The harness holds every response to the contract (schemas and index.json's errors).

const ROOT = { email: 'root@example.com', phone: '+1 555 0111', password: 'root horse battery staple', role: 'admin' };
const ROOT_MAC = '00:1a:2b:3c:4d:aa';
const OTHER_MAC = '00:1a:2b:3c:4d:77';
const NEW_SIGN_IN = /Subject: New sign-in to your Hellwall account/;
// Responses are checked against their schemas by the harness; the tests read them loosely.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Res = { status: string; [field: string]: any };
const send = (c: HellwallClient, req: Record<string, unknown>): Promise<Res> => c.send(req) as Promise<Res>;

/** A message's text with quoted-printable soft breaks and escapes undone (nodemailer wraps long lines). */
const textOf = (m: ReceivedMail): string => m.raw.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
/** Mail to `to` received since `since` messages whose text matches `re`. */
const mailsTo = (h: Harness, to: string, re: RegExp, since = 0): ReceivedMail[] => h.smtp.messages.slice(since).filter((m) => m.to.includes(to) && re.test(textOf(m)));

/** passcode.auth as sent by a 1.5 client, with its clock reading. */
async function loginAt(h: Harness, c: HellwallClient, clientTime: number | undefined, user = ALICE, mac = MAC): Promise<Res> {
  const passcode = await h.requestPasscode(c, user, mac);
  return send(c, { code: 2, email: user.email, phone: user.phone, password: user.password, passcode, mac, device: 'laptop: test', ...(clientTime !== undefined && { clientTime }) });
}

t.test('a login from a new device mails the owner after the answer; a known device and address mail nothing', async (t) => {
  const h = await startHarness(t, { config: { alerts: {} } });
  const c = await h.connect();
  const res = await loginAt(h, c, h.clock.now);
  t.equal(res.status, 'ok');
  t.equal(mailsTo(h, ALICE.email, NEW_SIGN_IN).length, 0, 'the answer came first: nothing was mailed before it');
  await h.app.mail.drain();
  const alerts = mailsTo(h, ALICE.email, NEW_SIGN_IN);
  t.equal(alerts.length, 1, 'then the new sign-in mail arrived');
  t.match(textOf(alerts[0]!), `device ${MAC} ("laptop: test"), address 127.0.0.1`);
  t.match(textOf(alerts[0]!), /If this was not you/);
  const [row] = await h.auditRows({ action: 'alert.new_device' });
  t.match(row, { outcome: 'success', email: ALICE.email, mac: MAC, detail: { newDevice: true, newAddress: true } });

  const since = h.smtp.messages.length;
  t.equal((await loginAt(h, c, h.clock.now)).status, 'ok', 'again from the same device');
  await h.app.mail.drain();
  t.equal(mailsTo(h, ALICE.email, NEW_SIGN_IN, since).length, 0, 'a known device: no alert');
  t.equal((await h.auditRows({ action: 'alert.new_device' })).length, 1);

  t.equal((await loginAt(h, c, h.clock.now, ALICE, OTHER_MAC)).status, 'ok', 'from another device');
  await h.app.mail.drain();
  t.equal(mailsTo(h, ALICE.email, NEW_SIGN_IN, since).length, 1, 'a new device: alerted');

  // device.list (30) and device.rename (31): the operator's own devices.
  const list = await send(c, { code: 30, token: res.token, mac: MAC });
  t.match(list, { status: 'ok', devices: [{ mac: MAC, name: 'laptop: test', registered: false }, { mac: OTHER_MAC }] });
  t.match(await send(c, { code: 31, token: res.token, mac: MAC, device: OTHER_MAC, name: 'phone' }), { status: 'ok', device: { mac: OTHER_MAC, name: 'phone' } });
  t.match(await send(c, { code: 31, token: res.token, mac: MAC, device: '00:00:00:00:00:01', name: 'x' }), { status: 'error', error: 'E_NOT_FOUND' });
  t.match(await send(c, { code: 30, token: res.token.slice(0, -2) + 'xx', mac: MAC }), { status: 'error', error: 'E_UNAUTHENTICATED' });
  // session.list shows each session's device as the client described it.
  t.match(await c.listSessions({ token: res.token, mac: MAC }), { status: 'ok', sessions: [{ mac: MAC, device: 'laptop: test' }, { mac: MAC }, { mac: OTHER_MAC }] });
});

t.test('registered devices only: an unregistered MAC fails like a wrong factor; admins register, list and remove devices', async (t) => {
  const h = await startHarness(t, { users: [ALICE, ROOT], config: { devices: { requireRegisteredRoles: 'user' } } });
  const c = await h.connect();
  const root = await h.login(c, ROOT, ROOT_MAC);
  const auth = { token: root.token, mac: ROOT_MAC };

  const refused = await loginAt(h, c, h.clock.now);
  t.match(refused, { status: 'error', error: 'E_AUTH_FAILED', message: 'authentication failed' }, 'nothing says which factor');
  t.match((await h.auditRows({ action: 'login', outcome: 'failure' }))[0], { email: ALICE.email, detail: { reason: 'unregistered-device' } });

  t.match(await send(c, { code: 33, ...auth, email: ALICE.email, device: MAC.toUpperCase(), name: 'desk' }), {
    status: 'ok',
    device: { mac: MAC, name: 'desk', registered: true, registeredBy: `admin:${ROOT.email}` },
  });
  t.match(await send(c, { code: 33, ...auth, email: 'nobody@example.com', device: MAC }), { status: 'error', error: 'E_NOT_FOUND' });
  const alice = await loginAt(h, c, h.clock.now);
  t.equal(alice.status, 'ok', 'the registered device logs in');
  t.match(await loginAt(h, c, h.clock.now, ALICE, OTHER_MAC), { status: 'error', error: 'E_AUTH_FAILED' }, 'another one still fails');
  await h.app.mail.drain();
  t.match(await send(c, { code: 32, ...auth, email: ALICE.email }), { status: 'ok', devices: [{ mac: MAC, name: 'desk', registered: true, lastIp: '127.0.0.1' }] });
  t.match(await send(c, { code: 32, token: alice.token, mac: MAC, email: ALICE.email }), { status: 'error', error: 'E_FORBIDDEN' }, 'an operator is no admin');

  t.match(await send(c, { code: 34, ...auth, email: ALICE.email, device: MAC }), { status: 'ok', sessionsEnded: 1 });
  t.equal((await c.check({ token: alice.token, mac: MAC, request: 'x.read' })).status, 'unauthorized', 'the session on the removed device ended');
  t.match(await send(c, { code: 34, ...auth, email: ALICE.email, device: MAC }), { status: 'error', error: 'E_NOT_FOUND' });
  t.match(await loginAt(h, c, h.clock.now), { status: 'error', error: 'E_AUTH_FAILED' }, 'and it can no longer log in');
  const rows = await h.auditRows({ action: 'admin.device.*' });
  t.same(rows.map((r) => `${r.action}:${r.outcome}`), [
    'admin.device.remove:failure',
    'admin.device.remove:success',
    'admin.device.register:failure',
    'admin.device.register:success',
  ]);
});

t.test('clock skew: beyond the bound refused naming the skew, within it accepted, absent accepted unless required', async (t) => {
  const h = await startHarness(t, { config: { auth: { maxClockSkewSeconds: 60 } } });
  const c = await h.connect();
  const ahead = await loginAt(h, c, h.clock.now + 61_000);
  t.match(ahead, { status: 'error', error: 'E_CLOCK_SKEW', message: /client clock is 61 s ahead of the server's \(at most 60 s allowed\)/ });
  const behind = await loginAt(h, c, h.clock.now - 3_600_000);
  t.match(behind, { status: 'error', error: 'E_CLOCK_SKEW', message: /3600 s behind/ });
  t.match((await h.auditRows({ action: 'login', outcome: 'failure' }))[0], { detail: { reason: 'clock-skew' } });
  t.equal((await loginAt(h, c, h.clock.now - 60_000)).status, 'ok', 'at the bound: accepted');
  t.equal((await loginAt(h, c, undefined)).status, 'ok', 'a 1.4 client without clientTime still logs in');
  t.match(await send(c, { code: 2, email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode: 'ABCDEF', mac: MAC, clientTime: '2026-11-21T12:00:00Z' }), { status: 'error', error: 'E_SCHEMA' }, 'milliseconds, not text');

  const strict = await startHarness(t, { config: { auth: { requireClientTime: true } } });
  const s = await strict.connect();
  t.match(await loginAt(strict, s, undefined), { status: 'error', error: 'E_CLOCK_SKEW', message: /requires clientTime/ });
  t.equal((await loginAt(strict, s, strict.clock.now)).status, 'ok');
});

/** Triggers every alert wired today: new device, password changed, session reuse, account lock. */
async function triggerAlerts(h: Harness): Promise<void> {
  const c = await h.connect();
  const first = await loginAt(h, c, h.clock.now);
  const other = await loginAt(h, c, h.clock.now, ALICE, OTHER_MAC);
  // Session reuse: renew past expiry, then present the rotated-out token after the grace.
  h.clock.advance(h.app.config.tokens.ttlSeconds * 1000 + 1);
  t.equal((await c.check({ token: other.token, mac: OTHER_MAC, request: 'x.read' })).status, 'renew');
  h.clock.advance((h.app.config.tokens.graceSeconds + 1) * 1000);
  t.equal((await c.check({ token: other.token, mac: OTHER_MAC, request: 'x.read' })).status, 'unauthorized');
  // Password changed (needs a live token: renew the first session).
  const renewed = await c.check({ token: first.token, mac: MAC, request: 'x.read' });
  const token = renewed.status === 'renew' ? renewed.token : first.token;
  t.match(await c.changePassword({ token, mac: MAC, password: ALICE.password, newPassword: 'a brand new passphrase for spring' }), { status: 'ok' });
  // Account locked: limits.lockoutFailures wrong passwords.
  for (let i = 0; i < 3; i++) await c.requestPasscode({ email: ALICE.email, password: 'wrong', mac: MAC });
  await h.app.mail.drain();
}

const ALERT_SUBJECTS = {
  'new-device': NEW_SIGN_IN,
  'password-changed': /Subject: Your Hellwall password was changed/,
  'session-reuse': /Subject: A Hellwall session of yours was ended/,
  'account-locked': /Subject: Your Hellwall account is locked/,
};

t.test('each alert wired today arrives by mail, and each can be switched off', async (t) => {
  const limits = { ipPasscodeRequestsPerMinute: 1_000_000, ipLoginsPerMinute: 1_000_000, ipFailedChecksPerMinute: 1_000_000, freeFailures: 1_000_000, passcodesPerHour: 10_000, lockoutFailures: 3 };
  const on = await startHarness(t, { config: { limits, alerts: {} } });
  await triggerAlerts(on);
  for (const [name, re] of Object.entries(ALERT_SUBJECTS)) t.ok(mailsTo(on, ALICE.email, re).length >= 1, `${name}: mailed`);
  const audited = new Set((await on.auditRows({ action: 'alert.*' })).map((r) => r.action));
  t.same([...audited].sort(), ['alert.account_locked', 'alert.new_device', 'alert.password_changed', 'alert.session_reuse']);

  const off = await startHarness(t, { config: { limits, alerts: { disabled: Object.keys(ALERT_SUBJECTS).join(',') } } });
  await triggerAlerts(off);
  for (const [name, re] of Object.entries(ALERT_SUBJECTS)) t.equal(mailsTo(off, ALICE.email, re).length, 0, `${name}: switched off`);
  t.equal((await off.auditRows({ action: 'alert.*' })).length, 0, 'nothing audited for a switched-off alert');
  t.ok(mailsTo(off, ALICE.email, /passcode is:/).length > 0, 'passcodes still go out');
});

t.test('the log carries no secret and no mail body of the new fields and alerts', async (t) => {
  const h = await startHarness(t, { config: { alerts: {} } });
  const c = await h.connect();
  const res = await loginAt(h, c, h.clock.now);
  await h.app.mail.drain();
  const text = h.logs.lines.map((l) => JSON.stringify(l)).join('\n');
  t.notOk(text.includes(ALICE.password), 'no password');
  t.notOk(text.includes(res.token), 'no token');
  t.notOk(text.includes('If this was not you'), 'no alert body');
  t.ok(h.logs.lines.some((l) => l.kind === 'alert.new-device' && l.msg === 'mail sent'), 'the alert mail is logged by kind only');
  t.ok(h.logs.lines.some((l) => l.event === 'device.new' && l.mac === MAC), 'the new device is logged (a MAC is no secret)');
});

t.test('session.list shows each session\'s known device: its name and whether it is registered', async (t) => {
  const h = await startHarness(t, { users: [ALICE, ROOT] });
  const c = await h.connect();
  const root = await h.login(c, ROOT, ROOT_MAC);
  t.match(await send(c, { code: 33, token: root.token, mac: ROOT_MAC, email: ALICE.email, device: MAC, name: 'desk' }), { status: 'ok' });
  const a = await loginAt(h, c, h.clock.now);
  await loginAt(h, c, h.clock.now, ALICE, OTHER_MAC);
  await h.app.mail.drain();
  const list = await c.listSessions({ token: a.token, mac: MAC });
  t.equal(list.status, 'ok');
  const sessions = list.status === 'ok' ? list.sessions : [];
  t.match(sessions.find((s) => s.mac === MAC), { deviceName: 'desk', deviceRegistered: true, device: 'laptop: test' });
  t.match(sessions.find((s) => s.mac === OTHER_MAC), { deviceName: 'laptop: test', deviceRegistered: false });

  // The admin views show the same (issue 13 item 4): admin.session.list, and revoke's answer.
  const admin = await send(c, { code: 16, token: root.token, mac: ROOT_MAC, email: ALICE.email });
  t.match(admin, { status: 'ok' });
  const byMac = (mac: string) => (admin.sessions as Array<Record<string, unknown>>).find((s) => s.mac === mac);
  t.match(byMac(MAC), { email: ALICE.email, device: 'laptop: test', deviceName: 'desk', deviceRegistered: true });
  t.match(byMac(OTHER_MAC), { deviceName: 'laptop: test', deviceRegistered: false });
  const everyone = await send(c, { code: 16, token: root.token, mac: ROOT_MAC });
  const rootSession = (everyone.sessions as Array<Record<string, unknown>>).find((s) => s.email === ROOT.email);
  t.match(rootSession, { mac: ROOT_MAC, deviceRegistered: false }, "each session's device is its own operator's");
  t.notOk(rootSession && 'deviceName' in rootSession, 'a device without a name has no deviceName');
  t.match(await send(c, { code: 17, token: root.token, mac: ROOT_MAC, sessionId: byMac(MAC)!.id }), { status: 'ok', session: { deviceName: 'desk', deviceRegistered: true } });
});
