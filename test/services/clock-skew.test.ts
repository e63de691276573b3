import t from 'tap';
import { checkClockSkew, clockSkewSeconds } from '../../src/services/clock-skew.js';
import { ServiceError } from '../../src/errors.js';
import { ALICE, buildKit, IP, MAC, refusal, SECOND, T0 } from '../helpers/services.js';

const BOUND = { maxClockSkewSeconds: 120, requireClientTime: false };

t.test('a client time within the bound passes, on either side and at the bound itself', async (t) => {
  for (const d of [0, 1, -1, 119_999, -119_999, 120_000, -120_000]) {
    t.doesNotThrow(() => checkClockSkew(T0 + d, T0, BOUND), `${d} ms`);
  }
});

t.test('a client time beyond the bound is refused with a message naming the skew and the side', async (t) => {
  t.throws(() => checkClockSkew(T0 + 300 * SECOND, T0, BOUND), refusal('clock-skew', { message: /client clock is 300 s ahead of the server's \(at most 120 s allowed\)/ }));
  t.throws(() => checkClockSkew(T0 - 3600 * SECOND, T0, BOUND), refusal('clock-skew', { message: /client clock is 3600 s behind the server's/ }));
  // Just past the bound: rounded away from zero, so the message never says "120 s" for a refusal.
  t.throws(() => checkClockSkew(T0 + 120_001, T0, BOUND), refusal('clock-skew', { message: /121 s ahead/ }));
  t.equal(clockSkewSeconds(T0 - 1500, T0), -2);
  t.equal(clockSkewSeconds(T0, T0), 0);
});

t.test('a missing client time passes unless the server requires it', async (t) => {
  t.doesNotThrow(() => checkClockSkew(undefined, T0, BOUND));
  t.throws(() => checkClockSkew(undefined, T0, { ...BOUND, requireClientTime: true }), refusal('clock-skew', { message: /requires clientTime/ }));
});

t.test('the bound is the configured one', async (t) => {
  t.doesNotThrow(() => checkClockSkew(T0 + 500 * SECOND, T0, { ...BOUND, maxClockSkewSeconds: 600 }));
  t.throws(() => checkClockSkew(T0 + 11 * SECOND, T0, { ...BOUND, maxClockSkewSeconds: 10 }), ServiceError);
});

t.test('passcode.auth refuses a skewed client before trying any factor, and audits it', async (t) => {
  const kit = await buildKit(t);
  const id = kit.users[ALICE.email]!.id;
  await kit.passcodes.request({ email: ALICE.email, password: ALICE.password, mac: MAC, reportedIp: null, seenIp: IP }, kit.log);
  await kit.mail.drain();
  const passcode = kit.mailer.passcodeFor(ALICE.email);
  const login = (clientTime?: number) =>
    kit.passcodes.authenticate({ email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode, mac: MAC, seenIp: IP, ...(clientTime !== undefined && { clientTime }) }, kit.log);

  await t.rejects(login(T0 - 200 * SECOND), refusal('clock-skew', { message: /200 s behind/ }));
  t.equal((await kit.raw.getPasscode(id))!.attempts, 0, 'the passcode was not tried: no guess counted');
  const [row] = await kit.auditRows({ action: 'login', outcome: 'failure' });
  t.match(row, { email: ALICE.email, ip: IP, detail: { reason: 'clock-skew', clientTime: T0 - 200 * SECOND, serverTime: T0 } });

  const ok = await login(T0 + 100 * SECOND);
  t.ok(ok.token, 'within the bound the login goes ahead');
});

t.test('with requireClientTime a login without clientTime is refused', async (t) => {
  const kit = await buildKit(t, { config: { auth: { requireClientTime: true } } });
  await kit.passcodes.request({ email: ALICE.email, password: ALICE.password, mac: MAC, reportedIp: null, seenIp: IP }, kit.log);
  await kit.mail.drain();
  const passcode = kit.mailer.passcodeFor(ALICE.email);
  await t.rejects(
    kit.passcodes.authenticate({ email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode, mac: MAC, seenIp: IP }, kit.log),
    refusal('clock-skew'),
  );
});
