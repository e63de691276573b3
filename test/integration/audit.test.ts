import Database from 'better-sqlite3';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { DATABASE_FILE } from '../../src/app.js';
import type { AuditRecord } from '../../src/store/store.js';
import { ALICE, MAC, startHarness, type Harness } from '../helpers/harness.js';
import { metricsText, sample } from '../helpers/http.js';

// Issue 4 §4: every security event of the seed flow and the session commands lands in the audit
// table, with time, operator, action, outcome, address, MAC and detail; never a secret.

const HOUR = 3_600_000;
const NORMAL_MAC = '00:1a:2b:3c:4d:5e';
const OTHER_MAC = '00-1A-2B-3C-4D-99';

/** Every audit row, oldest first, once what the server queued has been written. */
async function rows(h: Harness, filter: Partial<AuditRecord> = {}): Promise<AuditRecord[]> {
  return (await h.auditRows())
    .reverse()
    .filter((r) => Object.entries(filter).every(([k, v]) => r[k as keyof AuditRecord] === v));
}

/** The whole audit table as text, for "no secret anywhere" assertions. */
async function dump(h: Harness): Promise<string> {
  await h.app.audit.flush();
  const db = new Database(path.join(h.dataDir, DATABASE_FILE), { readonly: true });
  try {
    return JSON.stringify(db.prepare('SELECT * FROM audit').all());
  } finally {
    db.close();
  }
}

t.test('the seed flow is audited: passcode request, mail, login, renewal, reuse', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const start = h.clock.now;
  const passcode = await h.requestPasscode(client);
  // The mail is sent in the background; its row follows the delivery.
  for (let i = 0; i < 100 && (await rows(h, { action: 'passcode.sent' })).length === 0; i++) await sleep(10);
  const login = await client.login({ email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode, mac: NORMAL_MAC, device: 'ops laptop' });
  if (login.status !== 'ok') return t.fail(JSON.stringify(login));
  h.clock.advance(HOUR);
  const renewed = await client.check({ token: login.token, mac: NORMAL_MAC, request: 'inventory.read' });
  if (renewed.status !== 'renew') return t.fail(JSON.stringify(renewed));
  h.clock.advance(60_000); // past the grace
  t.equal((await client.check({ token: login.token, mac: NORMAL_MAC, request: 'inventory.read' })).status, 'unauthorized');

  const trail = await rows(h);
  t.same(
    trail.map((r) => [r.action, r.outcome]),
    [
      ['passcode.request', 'success'],
      ['passcode.sent', 'success'],
      ['login', 'success'],
      ['token.renew', 'success'],
      ['token.reuse', 'failure'],
    ],
  );
  const common = { userId: 1, email: ALICE.email, mac: NORMAL_MAC, actor: null };
  t.match(trail[0], { ...common, at: start, ip: '127.0.0.1', sessionId: null, detail: { reportedIp: null } });
  t.match(trail[1], { ...common, detail: { attempts: 1 } });
  t.match(trail[2], { ...common, at: start, ip: '127.0.0.1', sessionId: 1, detail: { device: 'ops laptop', evicted: 0 } });
  t.match(trail[3], { ...common, at: start + HOUR, ip: '127.0.0.1', sessionId: 1, detail: { generation: 1, request: 'inventory.read' } });
  t.match(trail[4], { ...common, at: start + HOUR + 60_000, sessionId: 1, detail: { generation: 0 } });

  const text = await dump(h);
  for (const secret of [ALICE.password, passcode, login.token, renewed.token, 'Awfer_hellwall_']) t.notOk(text.includes(secret), `no ${secret.slice(0, 6)}… in the audit table`);
  t.notMatch(text, /scrypt\$/, 'no password hash');
  const logged = h.logs.find({ event: 'audit', msg: 'audit' }).map((l) => l.audit as Record<string, unknown>);
  t.same(logged.map((e) => e.action), trail.map((r) => r.action), 'each event is also one uniform log line, for shipping off the host');
  t.match(logged[2], { at: start, userId: 1, email: ALICE.email, sessionId: 1, ip: '127.0.0.1', mac: NORMAL_MAC });
  const metrics = await metricsText(h.opsPort);
  t.equal(sample(metrics, 'hellwall_audit_events_total{outcome="written"}'), 5);
});

t.test('failures are audited with the reason, for real and unknown accounts alike', async (t) => {
  const disabled = { ...ALICE, email: 'dora@example.com' };
  const h = await startHarness(t, { users: [ALICE, disabled] });
  await h.app.store.setUserDisabled(2, true);
  const client = await h.connect();
  const wrong = { password: 'not the password at all', mac: OTHER_MAC };
  await client.requestPasscode({ email: ALICE.email, ...wrong });
  await client.requestPasscode({ email: 'nobody@example.com', ...wrong });
  await client.requestPasscode({ email: disabled.email, password: disabled.password, mac: OTHER_MAC });
  const passcode = await h.requestPasscode(client);
  const bad = await client.login({ email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode: passcode === 'AAAAAA' ? 'BBBBBB' : 'AAAAAA', mac: MAC });
  t.match(bad, { status: 'error', error: 'E_AUTH_FAILED' });
  await client.login({ email: 'nobody@example.com', phone: ALICE.phone, password: ALICE.password, passcode, mac: MAC });

  const failures = await rows(h, { outcome: 'failure' });
  t.same(
    failures.map((r) => [r.action, r.email, r.userId, r.detail?.reason]),
    [
      ['passcode.request', ALICE.email, 1, 'bad-password'],
      ['passcode.request', 'nobody@example.com', null, 'unknown-account'],
      ['passcode.request', disabled.email, 2, 'disabled'],
      ['login', ALICE.email, 1, 'passcode'],
      ['login', 'nobody@example.com', null, 'unknown-account'],
    ],
  );
  t.equal(failures[0]!.mac, NORMAL_MAC.replace('5e', '99'), 'the MAC as normalized (lower case, colons)');
  t.ok(failures.every((r) => r.ip === '127.0.0.1'));
  t.notOk((await dump(h)).includes(wrong.password), 'a wrong password is not recorded either');
});

t.test('rate-limit refusals are audited as denied', async (t) => {
  const h = await startHarness(t, { config: { limits: { ipPasscodeRequestsPerMinute: 1, ipLoginsPerMinute: 1 } } });
  const client = await h.connect();
  await client.requestPasscode({ email: ALICE.email, password: 'wrong password here', mac: MAC });
  t.match(await client.requestPasscode({ email: ALICE.email, password: 'wrong password here', mac: MAC }), { error: 'E_RATE_LIMITED' });
  const login = { email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode: 'AAAAAA', mac: MAC };
  await client.login(login);
  t.match(await client.login(login), { error: 'E_RATE_LIMITED' });
  t.same(
    (await rows(h, { outcome: 'denied' })).map((r) => [r.action, r.email, r.detail?.reason, r.detail?.scope]),
    [
      ['passcode.request', ALICE.email, 'rate-limited', 'address'],
      ['login', ALICE.email, 'rate-limited', 'address'],
    ],
  );
});

t.test('a denied request is audited with the request and the role', async (t) => {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'hellwall-policy-')), 'policy.json');
  writeFileSync(file, JSON.stringify({ roles: ['user', 'admin'], rules: [{ requests: ['inventory.*'], roles: ['user', 'admin'] }, { requests: ['admin.*'], roles: ['admin'] }] }));
  const h = await startHarness(t, { config: { policy: { file } } });
  const client = await h.connect();
  const { token } = await h.login(client);
  t.equal((await client.check({ token, mac: MAC, request: 'inventory.read' })).status, 'authorized');
  t.equal((await client.check({ token, mac: MAC, request: 'admin.users.delete' })).status, 'unauthorized');
  t.equal((await client.check({ token: 'Awfer_hellwall_' + 'x'.repeat(43), mac: MAC, request: 'admin.users.delete' })).status, 'unauthorized');
  for (let i = 0; i < 20; i++) await client.check({ token, mac: MAC, request: 'admin.users.delete' });
  const denied = await rows(h, { action: 'token.denied' });
  t.equal(denied.length, 1, 'the policy denial, not the unknown token (no session: nothing to attribute); its repeats coalesced');
  h.clock.advance(60_000);
  await client.check({ token, mac: MAC, request: 'admin.users.delete' });
  t.match((await rows(h, { action: 'token.denied' }))[1], { detail: { request: 'admin.users.delete', repeated: 20 } }, 'a minute on, the next row counts them');
  t.equal(sample(await metricsText(h.opsPort), 'hellwall_audit_events_total{outcome="coalesced"}'), 20);
  t.match(denied[0], { outcome: 'denied', userId: 1, email: ALICE.email, sessionId: 1, ip: '127.0.0.1', mac: NORMAL_MAC, detail: { request: 'admin.users.delete', role: 'user' } });
  t.equal((await rows(h, { action: 'token.renew' })).length + (await rows(h, { action: 'token.reuse' })).length, 0, 'authorized checks write nothing');
});

t.test('logout, logout everywhere, revoke and eviction are audited', async (t) => {
  const h = await startHarness(t, { config: { sessions: { maxPerUser: 2 } } });
  const client = await h.connect();
  const macs = [1, 2, 3, 4].map((i) => `00:1a:2b:3c:4d:0${i}`);
  const tokens: string[] = [];
  for (const mac of macs.slice(0, 3)) {
    tokens.push((await h.login(client, ALICE, mac)).token);
    h.clock.advance(1000);
  }
  t.match(await client.send({ code: 4, token: tokens[2]!, mac: macs[2]! }), { status: 'ok' });
  tokens.push((await h.login(client, ALICE, macs[3])).token);
  t.match(await client.send({ code: 5, token: tokens[3]!, mac: macs[3]! }), { status: 'ok', ended: 2 });

  const trail = (await rows(h)).filter((r) => r.action.startsWith('session.'));
  t.same(
    trail.map((r) => [r.action, r.sessionId, r.mac]),
    [
      ['session.evict', 1, macs[0]],
      ['session.logout', 3, macs[2]],
      ['session.logout_all', 4, macs[3]],
    ],
  );
  t.match(trail[0], { outcome: 'success', userId: 1, email: ALICE.email, detail: { by: 3, maxPerUser: 2 } });
  t.match(trail[2], { detail: { ended: 2 } });
  const login3 = (await rows(h, { action: 'login', sessionId: 3 }))[0];
  t.match(login3, { detail: { evicted: 1 } }, 'the login that evicted says so');
  t.ok(trail[0]!.id < login3!.id, 'the eviction is written with the login that caused it, before it');
});

t.test('a failed passcode mail is audited as a failure', async (t) => {
  const h = await startHarness(t);
  await h.smtp.stop();
  t.teardown(() => h.smtp.restart());
  const client = await h.connect();
  await client.requestPasscode({ email: ALICE.email, password: ALICE.password, mac: MAC });
  await h.app.mail.drain(10_000);
  const [sent] = await rows(h, { action: 'passcode.sent' });
  t.match(sent, { outcome: 'failure', userId: 1, email: ALICE.email, detail: { attempts: 3, error: String } });
});

t.test('the server deletes audit rows past audit.retentionDays; 0 keeps them', async (t) => {
  const DAY = 24 * HOUR;
  for (const [retentionDays, left] of [[1, 1], [0, 4]] as const) {
    const h = await startHarness(t, { config: { audit: { retentionDays }, housekeeping: { intervalSeconds: 0 } } });
    const client = await h.connect();
    await h.login(client);
    h.clock.advance(DAY + 1);
    await client.requestPasscode({ email: ALICE.email, password: 'wrong password here', mac: MAC });
    t.equal((await rows(h)).length, 4, 'passcode.request, passcode.sent, login, then a day later a failed request');
    const pass = await h.app.housekeeper.runOnce();
    t.equal(pass.deleted.auditRows, 4 - left, `retention ${retentionDays}: ${4 - left} deleted`);
    t.equal((await rows(h)).length, left);
  }
});
