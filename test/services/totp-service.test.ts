import t from 'tap';
import { masterToken, newBaseToken } from '../../src/primitives/tokens.js';
import { retireKey, rotateKey } from '../../src/keys/key-ring.js';
import { SecretBox } from '../../src/keys/secret-box.js';
import { totpCode, totpStep } from '../../src/primitives/totp.js';
import { EnrolmentService } from '../../src/services/enrolment-service.js';
import { Factors, parseFactorRequirements, statusOf } from '../../src/services/factors.js';
import { RecoveryService } from '../../src/services/recovery-service.js';
import { RECOVERY_KEY_KIND, TOTP_SECRET_KIND, TotpFactor } from '../../src/services/totp-service.js';
import { ScureBase32Plugin } from 'otplib';
import { ALICE, buildKit, IP, MAC, type Kit } from '../helpers/services.js';

// The TOTP factor and enrolment with a fake clock, a seeded random source and SQLite in memory.

const STEP = 30_000;

/** The kind of the ServiceError `p` rejects with; null when it resolves. */
const kindOf = (p: Promise<unknown>): Promise<string | null> => p.then(() => null, (e: unknown) => (e as { kind?: string }).kind ?? String(e));
const base32 = new ScureBase32Plugin();

function parts(kit: Kit, require = '') {
  const totp = new TotpFactor({ config: kit.config, store: kit.store, box: new SecretBox(kit.keys, kit.random), clock: () => kit.clock.now, random: kit.random, audit: kit.audit, alerts: kit.alerts });
  const factors = new Factors([totp], parseFactorRequirements(require));
  const enrolment = new EnrolmentService({ store: kit.store, clock: () => kit.clock.now, tokens: kit.tokens, throttle: kit.throttle, audit: kit.audit, factors });
  return { totp, factors, enrolment };
}

/** Enrols ALICE through the service; answers the raw secret and the recovery codes. */
async function enrol(kit: Kit, enrolment: EnrolmentService): Promise<{ secret: Buffer; codes: string[]; caller: { token: string; mac: string; seenIp: string } }> {
  const { caller } = await kit.openSession(ALICE.email);
  const started = await enrolment.start(caller, 'totp', kit.log);
  const secret = Buffer.from(base32.decode(started.secret as string));
  const done = await enrolment.confirm(caller, 'totp', totpCode(secret, kit.clock.now), kit.log);
  return { secret, codes: done.recoveryCodes as string[], caller };
}

t.test('factors.require is parsed strictly: an unknown factor or a bad shape stops start-up', async (t) => {
  t.same([...parseFactorRequirements('{"admin":["totp"],"ops":["totp","face","totp"]}')], [['admin', ['totp']], ['ops', ['totp', 'face']]]);
  t.same([...parseFactorRequirements('  ')], []);
  t.throws(() => parseFactorRequirements('{"admin":["sms"]}'), /unknown factor "sms"/);
  t.throws(() => parseFactorRequirements('["totp"]'), /JSON object/);
  t.throws(() => parseFactorRequirements('{"admin":"totp"}'), /list of factors/);
  t.throws(() => parseFactorRequirements('{admin'), /not JSON/);
  const kit = await buildKit(t);
  t.throws(() => new Factors([], parseFactorRequirements('{"admin":["face"]}')), /not available/, 'a factor this server does not offer');
  const { totp } = parts(kit);
  const offered = new Map([['totp' as const, totp]]);
  const row = (over: object) => ({ userId: 1, factor: 'totp', confirmedAt: null, mustEnroll: false, lastStep: 0, createdAt: 0, ...over });
  t.same(statusOf([], ['totp'], offered), { has: [], required: ['totp'], missing: ['totp'] });
  t.same(statusOf([row({ confirmedAt: 1 })], ['totp'], offered), { has: ['totp'], required: ['totp'], missing: [] });
  t.same(statusOf([row({ mustEnroll: true })], [], offered), { has: [], required: [], missing: ['totp'] }, 'flagged for re-enrolment');
  t.same(statusOf([row({ factor: 'face', confirmedAt: 1 })], [], offered), { has: [], required: [], missing: [] }, 'a factor not offered neither counts nor blocks');
});

t.test('enrolment: confirmed by a first valid code, with ten recovery codes; the secret is sealed', async (t) => {
  const kit = await buildKit(t);
  const { enrolment, totp, factors } = parts(kit);
  const { caller } = await kit.openSession(ALICE.email);
  const started = await enrolment.start(caller, 'totp', kit.log);
  const secret = Buffer.from(base32.decode(started.secret as string));
  const id = kit.users[ALICE.email]!.id;
  t.same((await factors.status({ id, role: 'user' }, kit.store)).has, [], 'not counted before confirmation');
  t.equal(await kindOf(enrolment.confirm(caller, 'totp', totpCode(secret, kit.clock.now + 3 * STEP), kit.log)), 'auth-failed', 'a code three steps off');
  const done = await enrolment.confirm(caller, 'totp', totpCode(secret, kit.clock.now), kit.log);
  t.equal((done.recoveryCodes as string[]).length, 10);
  t.equal(done.sessionEnded, false, 'a full session goes on');
  t.same((await factors.status({ id, role: 'user' }, kit.store)).has, ['totp']);
  const sealed = await kit.raw.getSecret(id, TOTP_SECRET_KIND);
  t.ok(sealed && !sealed.sealed.includes(secret), 'stored encrypted');
  t.ok(await kit.raw.getSecret(id, RECOVERY_KEY_KIND), 'the recovery-code key too');
  t.equal(await kindOf(enrolment.start(caller, 'totp', kit.log)), 'conflict', 'no second enrolment over a confirmed one');
  t.match((await kit.auditRows({ action: 'totp.confirm' })).map((r) => r.outcome).sort(), ['failure', 'success']);
  void totp;
});

t.test('verify: each step once, one step of drift, never after removal', async (t) => {
  const kit = await buildKit(t);
  const { enrolment, totp } = parts(kit);
  const { secret } = await enrol(kit, enrolment);
  const id = kit.users[ALICE.email]!.id;
  const now = kit.clock.now;
  t.equal(await totp.verify(id, totpCode(secret, now), kit.store, now), 'replay', 'the confirmation used this step');
  t.equal(await totp.verify(id, totpCode(secret, now + STEP), kit.store, now), 'ok', 'one step ahead');
  t.equal(await totp.verify(id, totpCode(secret, now + STEP), kit.store, now + STEP), 'replay', 'that step again');
  t.equal(await totp.verify(id, totpCode(secret, now + 2 * STEP), kit.store, now + 4 * STEP), 'wrong', 'two steps behind');
  t.equal(await totp.verify(id, 'abcdef', kit.store, now), 'wrong');
  t.equal((await kit.raw.listFactors(id))[0]!.lastStep, totpStep(now + STEP));
  t.equal(await kit.store.transaction((tx) => totp.remove(id, tx)), true);
  t.equal(await totp.verify(id, totpCode(secret, now + 5 * STEP), kit.store, now + 5 * STEP), 'wrong', 'removed');
  t.equal(await kit.raw.countRecoveryCodes(id), 0);
  t.equal(await kit.raw.getSecret(id, TOTP_SECRET_KIND), undefined);
});

t.test('recovery codes: each once, any case or spacing; regeneration voids the old set', async (t) => {
  const kit = await buildKit(t);
  const { enrolment, totp } = parts(kit);
  const { secret, codes, caller } = await enrol(kit, enrolment);
  const id = kit.users[ALICE.email]!.id;
  t.same(await totp.useRecoveryCode(id, ` ${codes[0]!.toLowerCase().replace('-', ' ')} `, kit.store), { ok: true, remaining: 9 });
  t.same(await totp.useRecoveryCode(id, codes[0]!, kit.store), { ok: false, remaining: 9 }, 'not twice');
  t.same(await totp.useRecoveryCode(id, 'nonsense', kit.store), { ok: false, remaining: 0 });
  t.equal(await kindOf(enrolment.regenerateRecoveryCodes(caller, totpCode(secret, kit.clock.now), kit.log)), 'auth-failed', 'a used step does not regenerate');
  kit.clock.now += STEP;
  const fresh = await enrolment.regenerateRecoveryCodes(caller, totpCode(secret, kit.clock.now), kit.log);
  t.equal(fresh.length, 10);
  t.same(await totp.useRecoveryCode(id, codes[1]!, kit.store), { ok: false, remaining: 10 }, 'the old set is void');
  t.same(await totp.useRecoveryCode(id, fresh[1]!, kit.store), { ok: true, remaining: 9 });
});

t.test('secrets survive a key rotation, and retiring the old key re-seals them under the current one', async (t) => {
  const kit = await buildKit(t);
  const { enrolment, totp } = parts(kit);
  const { secret, codes } = await enrol(kit, enrolment);
  const id = kit.users[ALICE.email]!.id;
  t.equal((await kit.raw.getSecret(id, TOTP_SECRET_KIND))?.keyId, 1);
  const next = rotateKey(kit.dataDir, kit.random, kit.log);
  kit.keys.reload();
  kit.clock.now += STEP;
  t.equal(await totp.verify(id, totpCode(secret, kit.clock.now), kit.store, kit.clock.now), 'ok', 'after rotation: still readable under the old key');
  const retired = await retireKey({ dataDir: kit.dataDir, store: kit.raw, now: kit.clock.now, log: kit.log, random: kit.random }, 1);
  t.equal(retired.secrets, 2, 'the TOTP secret and the recovery-code key were re-sealed');
  kit.keys.reload();
  t.equal((await kit.raw.getSecret(id, TOTP_SECRET_KIND))?.keyId, next);
  t.equal(kit.keys.get(1), undefined, 'key 1 is gone');
  kit.clock.now += STEP;
  t.equal(await totp.verify(id, totpCode(secret, kit.clock.now), kit.store, kit.clock.now), 'ok', 'after retirement: readable under the new key');
  t.same(await totp.useRecoveryCode(id, codes[2]!, kit.store), { ok: true, remaining: 9 }, 'and the recovery codes still verify');
});

t.test('an enrolment-only session answers the enrolment commands and nothing else', async (t) => {
  const kit = await buildKit(t);
  const { enrolment } = parts(kit);
  // Made in the store as passcode.auth makes it for an operator missing a required factor.
  const token = newBaseToken(kit.random);
  const user = kit.users[ALICE.email]!;
  const key = kit.keys.current;
  const id = await kit.raw.createSession({
    userId: user.id,
    master: masterToken(key.master, token, MAC, IP),
    keyId: key.id,
    mac: MAC,
    ip: IP,
    createdAt: kit.clock.now,
    expiresAt: kit.clock.now + 600_000,
    absoluteExpiresAt: kit.clock.now + 600_000,
    scope: 'enroll',
  });
  const caller = { token, mac: MAC, seenIp: IP };
  t.same(await kit.tokens.check({ ...caller, request: 'x.read' }, kit.log), { status: 'unauthorized' }, 'token.check: unauthorized');
  t.equal(await kindOf(kit.sessions.list(caller, kit.log)), 'unauthenticated', 'another session command: refused');
  t.equal(await kindOf(enrolment.regenerateRecoveryCodes(caller, '123456', kit.log)), 'unauthenticated', 'regenerating codes: refused');
  const started = await enrolment.start(caller, 'totp', kit.log);
  const secret = Buffer.from(base32.decode(started.secret as string));
  const done = await enrolment.confirm(caller, 'totp', totpCode(secret, kit.clock.now), kit.log);
  t.equal(done.sessionEnded, true, 'confirmation ends the enrolment session');
  t.equal((await kit.raw.findSessionById(id))?.revokeReason, 'enrolled');
  t.equal(await kindOf(enrolment.start(caller, 'totp', kit.log)), 'unauthenticated', 'and it answers nothing more');
});

t.test('an administrator removes an authenticator: re-enrolment at the next login, audited with the actor', async (t) => {
  const kit = await buildKit(t);
  const { enrolment, totp, factors } = parts(kit);
  const recovery = new RecoveryService({
    config: kit.config,
    store: kit.store,
    hasher: kit.hasher,
    keys: kit.keys,
    clock: () => kit.clock.now,
    random: kit.random,
    mail: kit.mail,
    throttle: kit.throttle,
    audit: kit.audit,
    factors,
    totp,
    alerts: kit.alerts,
  });
  t.equal(await kindOf(recovery.adminRemoveTotp('cli:root', 'nobody@example.com')), 'not-found');
  t.equal(await kindOf(recovery.adminRemoveTotp('cli:root', ALICE.email)), 'conflict', 'no authenticator to remove');
  await enrol(kit, enrolment);
  const id = kit.users[ALICE.email]!.id;
  t.equal((await recovery.adminRemoveTotp('cli:root', ALICE.email.toUpperCase())).id, id);
  t.same(await factors.status({ id, role: 'user' }, kit.store), { has: [], required: [], missing: ['totp'] }, 'must enrol again');
  t.equal(await kit.raw.countRecoveryCodes(id), 0);
  const rows = await kit.auditRows({ action: 'admin.user.totp_remove' });
  t.same(rows.map((r) => [r.outcome, r.actor]), [['success', 'cli:root'], ['failure', 'cli:root'], ['failure', 'cli:root']]);
  await kit.mail.drain();
  t.ok(kit.mailer.sent.some((m) => m.to === ALICE.email && /authenticator/i.test(m.subject + m.text)), 'the owner is told');
});
