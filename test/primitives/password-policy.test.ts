import { randomBytes } from 'node:crypto';
import t from 'tap';
import { COMMON_PASSWORDS, commonPasswordKey, isCommonPassword } from '../../src/primitives/common-passwords.js';
import {
  hashParams,
  PASSWORD_MAX,
  PASSWORD_MIN,
  PASSWORD_RECOMMENDED,
  PasswordHasher,
  passwordPolicyError,
  passwordPolicyWarning,
} from '../../src/primitives/passwords.js';
import { addUser, UserInputError } from '../../src/services/users.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import { TEST_SCRYPT } from '../helpers/harness.js';

const ON_LIST = /is on a list of commonly used passwords/;
const codePoints = (s: string): number => [...s.normalize('NFKC')].length;

t.test('the shipped list is large, holds the classic top passwords, and is in the form lookups need', async (t) => {
  t.ok(COMMON_PASSWORDS.length >= 10_000, `${COMMON_PASSWORDS.length} entries`);
  for (const top of ['123456', 'password', '12345678', 'qwerty', 'iloveyou', 'trustno1', 'football', 'baseball', 'letmein', 'sunshine']) {
    t.ok(isCommonPassword(top), `${top} is listed`);
  }
  // Binary search is only right on a strictly increasing list of normalized keys.
  const misplaced = COMMON_PASSWORDS.findIndex((e, i) => i > 0 && !(COMMON_PASSWORDS[i - 1]! < e));
  t.equal(misplaced, -1, 'strictly increasing (sorted, no duplicates)');
  t.same(COMMON_PASSWORDS.filter((e) => e !== commonPasswordKey(e) || e !== e.trim() || e === ''), [], 'every entry NFKC, lowercase, trimmed, non-empty');
  t.ok(Object.isFrozen(COMMON_PASSWORDS));
});

t.test('the length limits are 8 and 128, boundaries included', async (t) => {
  t.equal(PASSWORD_MIN, 8);
  t.equal(PASSWORD_MAX, 128);
  t.match(passwordPolicyError('vq7#kz2'), /at least 8 characters \(12 or more recommended\)/, '7 refused');
  t.equal(passwordPolicyError('vq7#kz2w'), null, '8 accepted');
  t.equal(passwordPolicyError('vq7#kz2w'.repeat(16)), null, '128 accepted');
  t.match(passwordPolicyError('vq7#kz2w'.repeat(16) + 'x'), /at most 128 characters/, '129 refused');
  t.match(passwordPolicyError(''), /at least 8/);
});

t.test('lengths count Unicode code points of the NFKC form, not bytes or UTF-16 units', async (t) => {
  const decomposed = 'e\u0301'; // e + combining acute: one character once composed
  t.equal(passwordPolicyError(decomposed.repeat(64)), null, '128 code points typed, 64 after NFKC');
  t.equal(passwordPolicyError(decomposed.repeat(4) + 'vq7#'), null, '12 code points typed, 8 after NFKC');
  t.match(passwordPolicyError(decomposed.repeat(65)), /at most 128/, '65 after NFKC, but 130 typed: more than the protocol carries');
  t.match(passwordPolicyError(decomposed.repeat(7)), /at least 8/, '14 code points typed, 7 after NFKC');
  t.equal(passwordPolicyError('😀'.repeat(8)), null, '8 astral characters are 16 UTF-16 units but 8 characters');
  t.match(passwordPolicyError('😀'.repeat(7)), /at least 8/);
  t.equal(codePoints('\uFDFA'), 18, 'one ligature expands to 18 characters under NFKC');
  t.match(passwordPolicyError('\uFDFA'.repeat(8)), /at most 128/, '8 typed, 144 hashed: the hashed form is what counts');
});

t.test('a listed password is refused whatever its case or width, and the message says why without echoing it', async (t) => {
  for (const pw of ['password', 'PASSWORD', 'PassWord1', 'iloveyou', 'ｐａｓｓｗｏｒｄ', 'trustno1', '12345678', 'qwertyuiop']) {
    // One fixed message for every listed password: it cannot carry the password.
    t.equal(passwordPolicyError(pw), 'password is on a list of commonly used passwords; choose another', `${pw} refused`);
  }
});

t.test('an entry from the middle of the list is refused, and so is every entry the length rule allows', async (t) => {
  const eligible = COMMON_PASSWORDS.filter((e) => codePoints(e) >= PASSWORD_MIN && codePoints(e) <= PASSWORD_MAX);
  t.ok(eligible.length > 5000, `${eligible.length} entries of an allowed length`);
  const middle = eligible[Math.floor(eligible.length / 2)]!;
  t.match(passwordPolicyError(middle), ON_LIST, 'the middle one');
  t.match(passwordPolicyError(middle.toUpperCase()), ON_LIST, 'the middle one, upper case');
  t.match(passwordPolicyError('rebecca1'), ON_LIST, 'one from the middle of the classic top 10,000');
  t.same(eligible.filter((e) => !ON_LIST.test(passwordPolicyError(e) ?? '')), [], 'none slips through');
});

t.test('the whole password is compared, not substrings, and there are no composition rules', async (t) => {
  t.ok(isCommonPassword('password'));
  t.equal(passwordPolicyError('my password is long enough'), null, 'contains a listed word');
  t.equal(passwordPolicyError('password password'), null, 'a listed word twice is not the listed word');
  t.equal(passwordPolicyError(' password'), null, 'whitespace is part of the password: no trimming');
  t.equal(passwordPolicyError('correct horse battery staple'), null, 'all lowercase with spaces');
  t.equal(passwordPolicyError('40718293656'), null, 'digits only');
  t.equal(passwordPolicyError('пароль-надёжный'), null, 'no ASCII at all');
});

t.test("the account's email, its local part and the service's name are refused", async (t) => {
  const ctx = { email: 'kjartan.operator@example.com' };
  t.match(passwordPolicyError('Kjartan.Operator@example.com', ctx), /must not be the account's email address/);
  t.match(passwordPolicyError('kjartan.operator', ctx), /must not be the account's email address/);
  t.match(passwordPolicyError('HellWall'), /service's name/);
  t.equal(passwordPolicyError('kjartan.operator', { email: 'someone@example.com' }), null, "another account's name is fine");
});

t.test('under 12 characters the policy accepts with a warning', async (t) => {
  t.equal(PASSWORD_RECOMMENDED, 12);
  t.match(passwordPolicyWarning('vq7#kz2wab1'), /shorter than the recommended 12 characters/, '11 warns');
  t.equal(passwordPolicyError('vq7#kz2wab1'), null, '... but is accepted');
  t.equal(passwordPolicyWarning('vq7#kz2wab1c'), null, '12 does not warn');
  t.match(passwordPolicyWarning('e\u0301'.repeat(11)), /recommended/, 'counted after NFKC too');
  t.notOk(passwordPolicyWarning('vq7#kz2wab1')!.includes('vq7#kz2wab1'), 'the password is not in the warning');
});

t.test('addUser applies the policy: a listed password is refused and nothing is stored', async (t) => {
  const store = openSqliteStore(':memory:');
  t.teardown(() => store.close());
  const hasher = new PasswordHasher({ concurrency: 1, queueMax: 4, random: randomBytes, params: TEST_SCRYPT });
  const deps = { store, hasher, clock: () => 0 };
  const input = { email: 'ops@example.com', phone: '+15550100', role: 'user' };
  await t.rejects(addUser(deps, { ...input, password: 'Baseball1' }), new UserInputError('password is on a list of commonly used passwords; choose another'));
  await t.rejects(addUser(deps, { ...input, password: 'OPS@example.com' }), UserInputError);
  t.equal(await store.findUserByEmail('ops@example.com'), undefined, 'no user was created');
  const user = await addUser(deps, { ...input, password: 'correct horse battery staple' });
  t.ok(await hasher.verify(user.passwordHash, 'correct horse battery staple'));
});

t.test('passwords are hashed in NFKC form, so composed and decomposed input verify alike', async (t) => {
  const hasher = new PasswordHasher({ concurrency: 1, queueMax: 4, random: randomBytes, params: TEST_SCRYPT });
  const hash = await hasher.hash('caf\u00e9 au lait, s\u2019il vous pla\u00eet');
  t.ok(await hasher.verify(hash, 'cafe\u0301 au lait, s\u2019il vous plai\u0302t'));
  t.notOk(await hasher.verify(hash, 'cafe au lait, s\u2019il vous plait'), 'accents still matter');
});

t.test('needsRehash: a weaker parameter or shorter salt, never a downgrade, never a malformed hash', async (t) => {
  const current = { ln: 12, r: 8, p: 2 };
  const hasher = new PasswordHasher({ concurrency: 1, queueMax: 4, random: randomBytes, params: current });
  const made = async (params: typeof current) =>
    new PasswordHasher({ concurrency: 1, queueMax: 4, random: randomBytes, params }).hash('correct horse battery staple');
  t.notOk(hasher.needsRehash(await hasher.hash('x')), 'current parameters');
  t.ok(hasher.needsRehash(await made({ ln: 11, r: 8, p: 2 })), 'lower N');
  t.ok(hasher.needsRehash(await made({ ln: 12, r: 4, p: 2 })), 'lower r');
  t.ok(hasher.needsRehash(await made({ ln: 12, r: 8, p: 1 })), 'lower p');
  t.ok(hasher.needsRehash(await made({ ln: 13, r: 8, p: 1 })), 'one lower is enough, even with another higher');
  t.notOk(hasher.needsRehash(await made({ ln: 13, r: 8, p: 2 })), 'stronger hashes are kept');
  const shortSalt = `$scrypt$ln=12,r=8,p=2$${randomBytes(8).toString('base64').replace(/=+$/, '')}$${randomBytes(32).toString('base64').replace(/=+$/, '')}`;
  t.ok(hasher.needsRehash(shortSalt), 'a salt shorter than 16 bytes');
  t.notOk(hasher.needsRehash('garbage'), 'malformed: it never verifies, so there is nothing to rehash');
  t.notOk(hasher.needsRehash('$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA'), 'an unknown algorithm never verifies either');
  t.same(hashParams(await made({ ln: 11, r: 8, p: 2 })), { ln: 11, r: 8, p: 2 });
  t.equal(hashParams('garbage'), null);
  t.same(hasher.params, current);
});

t.test('hashIfIdle hashes only when a slot is free, and never queues', async (t) => {
  const hasher = new PasswordHasher({ concurrency: 1, queueMax: 4, random: randomBytes, params: TEST_SCRYPT });
  let release!: () => void;
  const busy = hasher.limiter.run(() => new Promise<void>((r) => (release = r)));
  t.equal(hasher.hashIfIdle('correct horse battery staple'), null, 'the only slot is taken');
  t.equal(hasher.limiter.queued, 0, 'and nothing was queued');
  release();
  await busy;
  const pending = hasher.hashIfIdle('correct horse battery staple');
  t.ok(pending, 'a free slot: it hashes');
  t.ok(await hasher.verify((await pending)!, 'correct horse battery staple'));
});
