import t from 'tap';
import { ALICE, MAC, startHarness } from '../helpers/harness.js';
import { passcodeFrom } from '../helpers/smtp-sink.js';

const MIN = 60_000;

/** passcode.auth arguments for Alice, with `more` overriding. */
const auth = (passcode: string, more: Record<string, string> = {}) => ({
  email: ALICE.email,
  phone: ALICE.phone,
  password: ALICE.password,
  passcode,
  mac: MAC,
  ...more,
});
const HOUR = 60 * MIN;

t.test('the seed flow: passcode by SMTP, login, token check', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();

  const since = h.smtp.messages.length;
  const req = await client.requestPasscode({ email: ALICE.email, password: ALICE.password, mac: MAC, ip: '192.0.2.10' });
  t.same(req, { id: '1', code: 1, status: 'ok', expiresInSeconds: 180 });
  t.equal(h.validate(req), null, 'passcode.request response matches its schema');

  const mail = await h.smtp.waitFor(ALICE.email, since);
  t.ok(mail.secure, 'mail travelled over STARTTLS');
  t.equal(mail.user, 'hellwall', 'the transport authenticated to the SMTP server');
  t.match(mail.raw, /Subject: Your Hellwall passcode/);
  t.match(mail.raw, /127\.0\.0\.1/, 'mail names the address the server saw');
  t.match(mail.raw, /192\.0\.2\.10/, 'mail names the address the client reported');
  t.match(mail.raw, /00:1a:2b:3c:4d:5e/, 'mail names the MAC');
  t.match(mail.raw, /2026-11-21T12:03:00\.000Z/, 'mail gives the expiry (3 minutes)');
  const passcode = passcodeFrom(mail);
  t.match(passcode, /^[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{6}$/);

  const login = await client.login({ email: 'Alice@Example.com', phone: '+1 (555) 0100', password: ALICE.password, passcode: passcode.toLowerCase(), mac: '00-1A-2B-3C-4D-5E' });
  t.equal(h.validate(login), null, 'passcode.auth response matches its schema');
  t.equal(login.status, 'ok');
  if (login.status !== 'ok') return;
  t.match(login.token, /^Awfer_hellwall_[A-Za-z0-9_-]{43}$/);
  t.equal(login.expiresAt, h.clock.now + HOUR, 'token lives one hour');
  t.equal(login.renewableUntil, h.clock.now + 30 * 24 * HOUR, 'absolute limit 30 days');
  t.equal(login.idleTimeoutSeconds, 86400);
  t.same(login.user, { email: ALICE.email, role: 'user' });

  const check = await client.check({ token: login.token, mac: MAC, request: 'inventory.read', data: { item: 42 } });
  t.equal(h.validate(check), null, 'token.check response matches its schema');
  t.same(check, { id: '3', code: 3, status: 'authorized', user: { email: ALICE.email, role: 'user' }, expiresAt: login.expiresAt });

  const again = await h.connect();
  const other = await again.check({ token: login.token, mac: MAC, request: 'x' });
  t.equal(other.status, 'authorized', 'the token works on any connection from the same address');
});

t.test('the database holds no token, passcode or password in clear', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const passcode = await h.requestPasscode(client);
  const db = h.app.store as unknown as object;
  t.ok(db);
  const { readFileSync, readdirSync } = await import('node:fs');
  const login = await client.login(auth(passcode));
  if (login.status !== 'ok') return t.fail('login failed');
  const files = readdirSync(h.dataDir).filter((f) => f.startsWith('hellwall.db'));
  const bytes = Buffer.concat(files.map((f) => readFileSync(`${h.dataDir}/${f}`)));
  t.notOk(bytes.includes(login.token), 'token not stored');
  t.notOk(bytes.includes(login.token.slice('Awfer_hellwall_'.length)), 'token body not stored');
  t.notOk(bytes.includes(ALICE.password), 'password not stored');
  t.match(bytes.toString('latin1'), /\$scrypt\$ln=\d+,r=8,p=\d+\$/, 'password stored as a scrypt hash');
});

t.test('passcode request answers the same for unknown accounts and wrong passwords, and mails nothing', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const unknown = await client.send({ code: 1, id: 'a', email: 'nobody@example.com', password: ALICE.password, mac: MAC });
  const wrong = await client.send({ code: 1, id: 'a', email: ALICE.email, password: 'not the password', mac: MAC });
  const right = await client.send({ code: 1, id: 'a', email: ALICE.email, password: ALICE.password, mac: MAC });
  t.same(unknown, right, 'unknown account looks like success');
  t.same(wrong, right, 'wrong password looks like success');
  await h.smtp.waitFor(ALICE.email);
  // Give any stray mail time to arrive before asserting there was exactly one.
  await new Promise((r) => setTimeout(r, 200));
  t.equal(h.smtp.messages.length, 1, 'only the real request produced mail');
  t.equal(h.logs.find({ event: 'passcode.request', reason: 'unknown-account' }).length, 1, 'the log keeps the reason');
  t.equal(h.logs.find({ event: 'passcode.request', reason: 'bad-password' }).length, 1);
});

t.test('passcode request does the same expensive work whether or not the account exists', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const hasher = h.app.hasher;
  const verified: string[] = [];
  const original = hasher.verify.bind(hasher);
  hasher.verify = async (encoded: string, password: string) => {
    verified.push(encoded === hasher.dummyHash ? 'dummy' : 'real');
    return original(encoded, password);
  };
  await client.requestPasscode({ email: 'nobody@example.com', password: ALICE.password, mac: MAC });
  await client.requestPasscode({ email: ALICE.email, password: 'wrong password', mac: MAC });
  await client.requestPasscode({ email: ALICE.email, password: ALICE.password, mac: MAC });
  t.same(verified, ['dummy', 'real', 'real'], 'one scrypt verification per request, a dummy one for an unknown account');
  await client.send({ code: 2, email: 'nobody@example.com', phone: ALICE.phone, password: ALICE.password, passcode: 'ABCDEF', mac: MAC });
  t.same(verified.at(-1), 'dummy', 'passcode.auth for an unknown account verifies against the dummy too');
});

t.test('when SMTP refuses the message the answer is unchanged and the failure is logged after retries', async (t) => {
  const h = await startHarness(t);
  h.smtp.rejectWith = '550 mailbox unavailable';
  const client = await h.connect();
  const res = await client.requestPasscode({ email: ALICE.email, password: ALICE.password, mac: MAC });
  t.same(res, { id: '1', code: 1, status: 'ok', expiresInSeconds: 180 });
  await h.app.mail.drain();
  t.equal(h.app.mail.failed, 1, 'counted as failed');
  t.equal(h.logs.find({ msg: 'mail attempt failed; retrying' }).length, 2, 'retried twice');
  t.equal(h.logs.find({ msg: 'mail failed', kind: 'passcode' }).length, 1, 'then logged as failed');
  h.smtp.rejectWith = null;
  t.equal((await client.hello()).status, 'ok', 'the service carries on');
  await h.requestPasscode(client);
  await h.app.mail.drain();
  t.equal(h.app.mail.sent, 1, 'and mails again once SMTP recovers');
});

t.test('a passcode expires after 3 minutes', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const passcode = await h.requestPasscode(client);
  h.clock.advance(3 * MIN);
  const res = await client.login(auth(passcode));
  t.same(res, { id: '2', code: 2, status: 'error', error: 'E_AUTH_FAILED', message: 'authentication failed' });
  t.equal(h.validate(res), null);
  t.equal(await h.app.store.getPasscode(1), undefined, 'the expired passcode is deleted');
});

t.test('a passcode still works just before it expires', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const passcode = await h.requestPasscode(client);
  h.clock.advance(3 * MIN - 1);
  t.equal((await client.login(auth(passcode))).status, 'ok');
});

t.test('a passcode works once', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const passcode = await h.requestPasscode(client);
  t.equal((await client.login(auth(passcode))).status, 'ok');
  const reuse = await client.login(auth(passcode));
  t.equal(reuse.status === 'error' && reuse.error, 'E_AUTH_FAILED');
});

t.test('two concurrent logins with one passcode open one session', async (t) => {
  const h = await startHarness(t);
  const a = await h.connect();
  const b = await h.connect();
  const passcode = await h.requestPasscode(a);
  const results = await Promise.all([
    a.login(auth(passcode)),
    b.login(auth(passcode)),
    a.login(auth(passcode)),
  ]);
  t.equal(results.filter((r) => r.status === 'ok').length, 1, 'exactly one login wins');
});

t.test('a passcode is void after 5 wrong attempts', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const passcode = await h.requestPasscode(client);
  const wrong = passcode === 'ZZZZZZ' ? 'YYYYYY' : 'ZZZZZZ';
  for (let i = 0; i < 4; i++) {
    t.equal((await client.login(auth(wrong))).status, 'error');
  }
  t.equal((await h.app.store.getPasscode(1))?.attempts, 4);
  t.equal((await client.login(auth(wrong))).status, 'error', 'fifth wrong guess');
  const right = await client.login(auth(passcode));
  t.equal(right.status === 'error' && right.error, 'E_AUTH_FAILED', 'the right passcode no longer works');
  t.ok(h.logs.find({ event: 'login' }).some((l) => String(l.reason).includes('passcode-void')), 'voiding is logged');
});

t.test('four wrong attempts leave the passcode usable', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const passcode = await h.requestPasscode(client);
  const wrong = passcode === 'ZZZZZZ' ? 'YYYYYY' : 'ZZZZZZ';
  for (let i = 0; i < 4; i++) await client.login(auth(wrong));
  t.equal((await client.login(auth(passcode))).status, 'ok');
});

t.test('a newer passcode request replaces the older passcode', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const first = await h.requestPasscode(client);
  let second = await h.requestPasscode(client);
  // Two draws can coincide (1 in 887 million); draw again rather than test nothing.
  while (second === first) second = await h.requestPasscode(client);
  const old = await client.login(auth(first));
  t.equal(old.status === 'error' && old.error, 'E_AUTH_FAILED', 'the older passcode is gone');
  t.equal((await client.login(auth(second))).status, 'ok');
});

t.test('every factor must match: wrong password, phone, email or MAC fail alike', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const passcode = await h.requestPasscode(client);
  const cases = [
    { ...ALICE, passcode, mac: MAC, password: 'wrong password!' },
    { ...ALICE, passcode, mac: MAC, phone: '+1 555 0199' },
    { ...ALICE, passcode, mac: MAC, email: 'mallory@example.com' },
    { ...ALICE, passcode, mac: '00:1a:2b:3c:4d:5f' },
  ];
  const answers = [];
  for (const c of cases) answers.push(await client.send({ code: 2, id: 'x', email: c.email, phone: c.phone, password: c.password, passcode: c.passcode, mac: c.mac }));
  for (const a of answers) t.same(a, { id: 'x', code: 2, status: 'error', error: 'E_AUTH_FAILED', message: 'authentication failed' });
  t.equal((await h.app.store.getPasscode(1))?.attempts, 3, 'failures against the account count as guesses (unknown email does not)');
  t.equal((await client.login(auth(passcode))).status, 'ok', 'the right answer still works');
});

t.test('token lifecycle: authorized, renew with rotation, grace, reuse detection', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const login = await h.login(client);
  const check = (token: string) => client.check({ token, mac: MAC, request: 'r' });

  h.clock.advance(HOUR - 1);
  t.equal((await check(login.token)).status, 'authorized', 'valid until the last millisecond');
  h.clock.advance(1);
  const renewed = await check(login.token);
  t.equal(h.validate(renewed), null, 'renew response matches its schema');
  t.equal(renewed.status, 'renew', 'expired token inside the window is renewed');
  if (renewed.status !== 'renew') return;
  t.not(renewed.token, login.token, 'a new token');
  t.match(renewed.token, /^Awfer_hellwall_[A-Za-z0-9_-]{43}$/);
  t.equal(renewed.expiresAt, h.clock.now + HOUR);
  t.equal(renewed.renewableUntil, login.renewableUntil, 'the absolute limit does not move');
  t.equal((await check(renewed.token)).status, 'authorized', 'the new token works');

  h.clock.advance(10_000);
  const inflight = await check(login.token);
  t.equal(inflight.status, 'renew', 'within the grace the old token gets...');
  t.equal(inflight.status === 'renew' && inflight.token, renewed.token, '...the same new token');
  t.equal((await check(renewed.token)).status, 'authorized', 'and the new token keeps working');

  h.clock.advance(30_000);
  t.equal((await check(login.token)).status, 'unauthorized', 'after the grace the old token is refused');
  t.equal((await check(renewed.token)).status, 'unauthorized', 'and its reuse revoked the whole session');
  t.equal(h.logs.find({ event: 'token.reuse' }).length, 1, 'reuse is logged');
});

t.test('renewal stops at the idle limit', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const login = await h.login(client);
  h.clock.advance(24 * HOUR - 1);
  t.equal((await client.check({ token: login.token, mac: MAC, request: 'r' })).status, 'renew', 'just inside the idle limit');
  const h2 = await startHarness(t);
  const c2 = await h2.connect();
  const l2 = await h2.login(c2);
  h2.clock.advance(24 * HOUR);
  t.equal((await c2.check({ token: l2.token, mac: MAC, request: 'r' })).status, 'unauthorized', 'idle for 24 h');
  t.equal(h2.logs.find({ reason: 'idle-limit' }).length, 1);
});

t.test('use keeps a session alive; renewal stops at the absolute limit', async (t) => {
  const h = await startHarness(t, { config: { tokens: { absoluteSeconds: 3 * 3600 } } });
  const client = await h.connect();
  const login = await h.login(client);
  t.equal(login.renewableUntil, h.clock.now + 3 * HOUR);
  let token = login.token;
  for (const step of [1, 2]) {
    h.clock.advance(HOUR);
    const res = await client.check({ token, mac: MAC, request: 'r' });
    t.equal(res.status, 'renew', `renewal ${step}`);
    if (res.status === 'renew') {
      token = res.token;
      t.ok(res.expiresAt <= login.renewableUntil, 'a renewed token never outlives the absolute limit');
    }
  }
  h.clock.advance(HOUR);
  t.equal((await client.check({ token, mac: MAC, request: 'r' })).status, 'unauthorized', 'past the absolute limit');
  t.equal(h.logs.find({ reason: 'absolute-limit' }).length, 1);
});

t.test('a token is bound to its MAC and to the address the server saw', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const login = await h.login(client);
  const wrongMac = await client.check({ token: login.token, mac: '00:1a:2b:3c:4d:5f', request: 'r' });
  t.same(wrongMac, { id: '3', code: 3, status: 'unauthorized' }, 'another MAC: unauthorized, nothing more');
  t.equal(h.validate(wrongMac), null);

  const elsewhere = await h.connect({ localAddress: '127.0.0.2' });
  const fromOtherIp = await elsewhere.check({ token: login.token, mac: MAC, request: 'r' });
  t.same(fromOtherIp, { id: '1', code: 3, status: 'unauthorized' }, 'another address: unauthorized');
  const unknown = await client.check({ token: 'Awfer_hellwall_' + 'A'.repeat(43), mac: MAC, request: 'r' });
  t.same({ ...unknown, id: undefined }, { ...wrongMac, id: undefined }, 'indistinguishable from an unknown token');
  const garbage = await client.check({ token: 'not a token', mac: MAC, request: 'r' });
  t.equal(garbage.status, 'unauthorized');

  t.equal((await client.check({ token: login.token, mac: MAC, request: 'r' })).status, 'authorized', 'still fine from the right place');
  // Expired checks from the wrong place must not renew either.
  h.clock.advance(HOUR);
  t.equal((await elsewhere.check({ token: login.token, mac: MAC, request: 'r' })).status, 'unauthorized', 'no renewal from another address');
  t.equal((await client.check({ token: login.token, mac: MAC, request: 'r' })).status, 'renew');
});

t.test('a login from another address binds the token to that address', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect({ localAddress: '127.0.0.3' });
  const login = await h.login(client);
  t.equal((await client.check({ token: login.token, mac: MAC, request: 'r' })).status, 'authorized');
  const local = await h.connect();
  t.equal((await local.check({ token: login.token, mac: MAC, request: 'r' })).status, 'unauthorized');
});

t.test('pipelined requests are answered in order with their ids', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const login = await h.login(client);
  const sent: Array<Promise<Record<string, unknown>>> = [];
  for (let i = 0; i < 60; i++) {
    const id = `p${i}`;
    if (i % 15 === 7) sent.push(client.send({ code: 1, id, email: ALICE.email, password: 'wrong password', mac: MAC }));
    else if (i % 3 === 0) sent.push(client.send({ code: 0, id }));
    else sent.push(client.send({ code: 3, id, token: login.token, mac: MAC, request: 'r' }));
  }
  const answers = await Promise.all(sent);
  t.same(answers.map((a) => a.id), Array.from({ length: 60 }, (_, i) => `p${i}`), 'ids in request order');
  t.ok(answers.every((a) => h.validate(a as never) === null), 'every answer matches its schema');
  t.equal(answers[7]!.code, 1, 'the slow (password-hashing) request kept its place');
});

t.test('hello reports version and limits', async (t) => {
  const h = await startHarness(t, { config: { maxFrameBytes: 4096 } });
  const client = await h.connect();
  const res = await client.hello();
  t.same(res, { id: '1', code: 0, status: 'ok', protocol: 'hellwall', version: h.app.protocol.version, maxFrameBytes: 4096, maxInflight: 64 });
  t.match(h.app.protocol.version, /^1\.\d+$/);
  t.equal(h.validate(res), null);
});

t.test('no password, passcode or token ever reaches the log', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const passcode = await h.requestPasscode(client);
  await client.login(auth(passcode === 'ZZZZZZ' ? 'YYYYYY' : 'ZZZZZZ'));
  const login = await client.login(auth(passcode));
  if (login.status !== 'ok') return t.fail('login failed');
  await client.check({ token: login.token, mac: MAC, request: 'r' });
  h.clock.advance(HOUR);
  const renewed = await client.check({ token: login.token, mac: MAC, request: 'r' });
  if (renewed.status !== 'renew') return t.fail('no renewal');
  await client.send({ code: 2, email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode: 'bad!', mac: MAC });
  await client.close();
  await h.app.close();
  const text = h.logs.text;
  t.ok(h.logs.raw.length > 10, 'the flow was logged at trace level');
  t.ok(h.logs.find({ event: 'login', outcome: 'success' }).length === 1, 'the login is in the log');
  for (const [name, secret] of [
    ['password', ALICE.password],
    ['passcode', passcode],
    ['token', login.token],
    ['token body', login.token.slice(15)],
    ['renewed token', renewed.token.slice(15)],
  ] as const) {
    t.notOk(text.includes(secret), `${name} absent from the log`);
  }
});

t.test('last activity is written at most once a minute per session', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const login = await h.login(client);
  const loginAt = h.clock.now;
  const lastSeen = async () => (await h.app.store.findSessionById(1))?.lastSeenAt;
  for (let i = 0; i < 5; i++) {
    h.clock.advance(10_000);
    t.equal((await client.check({ token: login.token, mac: MAC, request: 'r' })).status, 'authorized');
  }
  t.equal(await lastSeen(), loginAt, 'no write within the first minute');
  h.clock.advance(10_000);
  await client.check({ token: login.token, mac: MAC, request: 'r' });
  t.equal(await lastSeen(), loginAt + 60_000, 'written once a minute has passed');
});
