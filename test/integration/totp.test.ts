import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import t from 'tap';
import { ALICE, MAC, startHarness } from '../helpers/harness.js';
import { enrolTotp, loginWithTotp, mailMatching } from '../helpers/totp.js';
import { totpCode, totpStep } from '../../src/primitives/totp.js';

// TOTP over the real wire (TLS, SMTP, SQLite): enrolment [P-4.14], confirmation [P-4.15], login
// with the code, replay refusal (ASVS 2.8.4), drift, and the enrolment-only session.

const STEP = 30_000;
// Alerts of new devices would interleave with the passcode mails these tests read; they have
// tests of their own.
const CONFIG = { alerts: { newDevice: false } };

t.test('enrol, confirm, then every login needs the code', async (t) => {
  const h = await startHarness(t, { config: CONFIG });
  const client = await h.connect();
  const { token } = await h.login(client);
  const started = await client.send<Record<string, unknown>>({ code: 22, token, mac: MAC });
  t.match(started, { status: 'ok', period: 30, digits: 6, algorithm: 'SHA1' });
  t.match(started.uri, /^otpauth:\/\/totp\/Hellwall:alice(%40|@)example\.com\?.*issuer=Hellwall/);
  t.ok(Buffer.from(started.qrPng as string, 'base64').subarray(1, 4).equals(Buffer.from('PNG')), 'the QR code is a PNG');
  t.match(started.qrText, /[█▀▄]/, 'and terminal text');
  t.match(await client.send({ code: 22, token, mac: MAC }), { status: 'ok' }, 'an unconfirmed enrolment can be restarted');

  const since = h.smtp.messages.length;
  const enrolled = await enrolTotp(h, client, token);
  t.equal(enrolled.recoveryCodes.length, 10, 'ten recovery codes, shown once');
  t.equal(new Set(enrolled.recoveryCodes).size, 10);
  t.match(await client.send({ code: 22, token, mac: MAC }), { status: 'error', error: 'E_CONFLICT' }, 'a confirmed authenticator is not replaced by enrolling again');
  t.match((await mailMatching(h, ALICE.email, since, /authenticator/i)).raw, /Subject: .*authenticator/i, 'the owner is told by mail');

  // The secret is sealed at rest: neither the raw bytes nor the base32 form is in the database.
  const row = await h.app.store.getSecret(1, 'totp');
  t.ok(row && !row.sealed.includes(enrolled.secret), 'the stored secret is encrypted');
  t.equal(row?.keyId, h.app.keys.current.id, 'under the current server key');

  h.clock.advance(STEP);
  t.match(await loginWithTotp(h, client, undefined), { status: 'error', error: 'E_AUTH_FAILED' }, 'no code: refused');
  const wrong = enrolled.code() === '000000' ? '000001' : '000000';
  t.match(await loginWithTotp(h, client, wrong), { status: 'error', error: 'E_AUTH_FAILED', message: 'authentication failed' }, 'a wrong code: refused, not said which factor');
  t.match(await loginWithTotp(h, client, enrolled.code()), { status: 'ok' }, 'the right code: in');
  t.match(await client.send({ code: 2, email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode: 'AAAAAA', mac: MAC, totp: enrolled.recoveryCodes[0] }), { status: 'error', error: 'E_SCHEMA' }, 'a recovery code is no login code');
  const failures = await h.auditRows({ action: 'login', outcome: 'failure' });
  t.ok(failures.some((r) => r.detail?.reason === 'totp'), 'the audit trail knows which factor failed');
  t.notOk(JSON.stringify(await h.auditRows()).includes(enrolled.base32), 'never the secret in the audit trail');
  t.notOk(h.logs.text.includes(enrolled.base32), 'nor in the log');
  for (const c of enrolled.recoveryCodes) t.notOk(h.logs.text.includes(c) || JSON.stringify(await h.auditRows()).includes(c), 'nor a recovery code');
});

t.test('a code is accepted once: a replay in the same step is refused and audited', async (t) => {
  const h = await startHarness(t, { config: CONFIG });
  const client = await h.connect();
  const { token } = await h.login(client);
  const enrolled = await enrolTotp(h, client, token);
  h.clock.advance(STEP);
  const code = enrolled.code();
  t.match(await loginWithTotp(h, client, code), { status: 'ok' });
  t.match(await loginWithTotp(h, client, code), { status: 'error', error: 'E_AUTH_FAILED' }, 'the same code again');
  const replays = await h.auditRows({ action: 'totp.replay' });
  t.match(replays[0], { outcome: 'failure', email: ALICE.email, detail: { flow: 'passcode.auth' } });
  h.clock.advance(STEP);
  t.match(await loginWithTotp(h, client, enrolled.code()), { status: 'ok' }, 'the next step\'s code works');
});

t.test('one step of drift either way is accepted, two are not', async (t) => {
  const h = await startHarness(t, { config: CONFIG });
  const client = await h.connect();
  const { token } = await h.login(client);
  const enrolled = await enrolTotp(h, client, token);
  h.clock.advance(3 * STEP);
  t.match(await loginWithTotp(h, client, enrolled.code(h.clock.now - STEP)), { status: 'ok' }, 'the client one step behind');
  h.clock.advance(3 * STEP);
  t.match(await loginWithTotp(h, client, enrolled.code(h.clock.now + STEP)), { status: 'ok' }, 'the client one step ahead');
  h.clock.advance(3 * STEP);
  t.match(await loginWithTotp(h, client, enrolled.code(h.clock.now - 2 * STEP)), { status: 'error', error: 'E_AUTH_FAILED' }, 'two steps behind');
  t.match(await loginWithTotp(h, client, enrolled.code(h.clock.now + 2 * STEP)), { status: 'error', error: 'E_AUTH_FAILED' }, 'two steps ahead');
});

t.test('wrong codes count with the other second-factor failures', async (t) => {
  const h = await startHarness(t, { config: { ...CONFIG, limits: { freeFailures: 3 } } });
  const client = await h.connect();
  const { token } = await h.login(client);
  const enrolled = await enrolTotp(h, client, token);
  h.clock.advance(STEP);
  const wrong = enrolled.code() === '123456' ? '654321' : '123456';
  const answers = [];
  for (let i = 0; i < 3; i++) answers.push(await loginWithTotp(h, client, wrong));
  t.ok(answers.some((a) => a.status === 'error' && a.error === 'E_AUTH_FAILED'), 'wrong codes are refused');
  t.ok(answers.some((a) => a.status === 'error' && a.error === 'E_RATE_LIMITED'), 'and run into the limit');
  t.match(await loginWithTotp(h, client, enrolled.code()), { status: 'error', error: 'E_RATE_LIMITED' }, 'then even the right code waits');
  // Confirmation guesses with a stolen session count the same way.
  const other = await startHarness(t, { config: { ...CONFIG, limits: { freeFailures: 3 } } });
  const c2 = await other.connect();
  const { token: t2 } = await other.login(c2);
  await c2.send({ code: 22, token: t2, mac: MAC });
  const guesses = [];
  for (let i = 0; i < 4; i++) guesses.push(await c2.send({ code: 23, token: t2, mac: MAC, totp: String(100000 + i) }));
  t.ok(guesses.some((a) => a.status === 'error' && a.error === 'E_AUTH_FAILED'), 'wrong confirmation codes are refused');
  t.ok(guesses.some((a) => a.status === 'error' && a.error === 'E_RATE_LIMITED'), 'and run into the same limit');
  t.match((await other.auditRows({ action: 'totp.confirm', outcome: 'failure' }))[0], { detail: { reason: 'wrong' } });
});

t.test('a role that requires TOTP: without one, the operator can only enrol', async (t) => {
  const h = await startHarness(t, { config: { ...CONFIG, factors: { require: '{"user":["totp"]}' } } });
  const client = await h.connect();
  const first = await loginWithTotp(h, client, undefined);
  t.match(first, { status: 'ok', scope: 'enroll', enroll: ['totp'] }, 'an enrolment-only session');
  const token = first.token as string;
  t.match(await client.check({ token, mac: MAC, request: 'x.read' }), { status: 'unauthorized' }, 'it authorizes nothing');
  t.match(await client.listSessions({ token, mac: MAC }), { status: 'error', error: 'E_UNAUTHENTICATED' }, 'and answers no other command');
  t.match(await client.send({ code: 24, token, mac: MAC, totp: '123456' }), { status: 'error', error: 'E_UNAUTHENTICATED' });
  const enrolled = await enrolTotp(h, client, token);
  t.equal(enrolled.recoveryCodes.length, 10);
  t.match(await client.check({ token, mac: MAC, request: 'x.read' }), { status: 'unauthorized' }, 'the enrolment session ended with the confirmation');
  h.clock.advance(STEP);
  const full = await loginWithTotp(h, client, enrolled.code());
  t.match(full, { status: 'ok' });
  t.notOk('scope' in full, 'now a full session');
  t.match(await client.check({ token: full.token as string, mac: MAC, request: 'x.read' }), { status: 'authorized' });
});

t.test('recovery codes can be regenerated with a current code; the old ones are void', async (t) => {
  const h = await startHarness(t, { config: CONFIG });
  const client = await h.connect();
  const { token } = await h.login(client);
  const enrolled = await enrolTotp(h, client, token);
  t.match(await client.send({ code: 24, token, mac: MAC, totp: enrolled.code() }), { status: 'error', error: 'E_AUTH_FAILED' }, 'the confirmation\'s code was used already');
  h.clock.advance(STEP);
  const res = await client.send<Record<string, unknown>>({ code: 24, token, mac: MAC, totp: enrolled.code() });
  t.match(res, { status: 'ok' });
  const fresh = res.recoveryCodes as string[];
  t.equal(fresh.length, 10);
  t.notOk(fresh.some((c) => enrolled.recoveryCodes.includes(c)), 'all new');
  t.equal(await h.app.store.countRecoveryCodes(1), 10, 'only the new ones are stored');
  t.match((await h.auditRows({ action: 'recovery_codes.regenerate' }))[0], { outcome: 'success' });
});

// An independent implementation: Debian's oathtool, given the base32 secret the server showed.
const OATHTOOL = '/usr/bin/oathtool';
t.test('a login with a code made by oathtool', { skip: !existsSync(OATHTOOL) && !process.env.HELLWALL_REQUIRE_TOOLCHAINS ? 'oathtool is not installed' : false }, async (t) => {
  const h = await startHarness(t, { config: CONFIG });
  const client = await h.connect();
  const { token } = await h.login(client);
  const enrolled = await enrolTotp(h, client, token);
  h.clock.advance(STEP);
  const iso = new Date(h.clock.now).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  const code = execFileSync(OATHTOOL, ['--totp', '-b', `--now=${iso}`, enrolled.base32], { encoding: 'utf8' }).trim();
  t.equal(code, totpCode(enrolled.secret, h.clock.now), 'oathtool agrees');
  t.match(await loginWithTotp(h, client, code), { status: 'ok' });
  t.ok(totpStep(h.clock.now) > 0);
});
