import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { constantEquals, constantEqualsBytes } from '../../src/primitives/constant-equals.js';
import { ServiceError } from '../../src/errors.js';
import { deriveKeys, loadOrCreateServerKey } from '../../src/keys/keys.js';
import { Limiter } from '../../src/primitives/limiter.js';
import { normalizeMac, normalizePhone } from '../../src/primitives/normalize.js';
import { normalizeIp } from '../../src/net/ip.js';
import { generatePasscode, hashPasscode, PASSCODE_ALPHABET } from '../../src/primitives/passcodes.js';
import { DEFAULT_SCRYPT, PasswordHasher, passwordPolicyError } from '../../src/primitives/passwords.js';
import { isWellFormedToken, masterToken, newBaseToken, rotatedToken, TOKEN_PREFIX } from '../../src/primitives/tokens.js';
import { createLogger } from '../../src/log.js';
import { LogSink } from '../helpers/log-sink.js';

/** A "random" source that replays the given bytes (then zeros), counting what was drawn. */
function scripted(bytes: number[]): { fn: (n: number) => Buffer; drawn: () => number } {
  let pos = 0;
  return {
    fn: (n) => {
      const out = Buffer.alloc(n);
      for (let i = 0; i < n; i++) out[i] = bytes[pos++] ?? 0;
      return out;
    },
    drawn: () => pos,
  };
}

t.test('passcodes come from the unambiguous alphabet', async (t) => {
  t.equal(PASSCODE_ALPHABET.length, 31);
  t.notMatch(PASSCODE_ALPHABET, /[01OIL]/, 'no characters a person confuses');
  for (let i = 0; i < 200; i++) t.match(generatePasscode(randomBytes), /^[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{6}$/);
});

t.test('passcode generation rejects biased bytes instead of folding them', async (t) => {
  // 248 = 8 * 31 is the first byte that would make `byte % 31` favour the first characters.
  const src = scripted([248, 255, 0, 249, 30, 31, 62, 250, 1, 2, 0, 0]);
  t.equal(generatePasscode(src.fn), [0, 30, 0, 0, 1, 2].map((i) => PASSCODE_ALPHABET[i]).join(''));
});

t.test('passcode hashes are keyed, bound to the user and case-insensitive', async (t) => {
  const key = randomBytes(32);
  t.same(hashPasscode(key, 1, 'abc234'), hashPasscode(key, 1, 'ABC234'));
  t.notSame(hashPasscode(key, 1, 'ABC234'), hashPasscode(key, 2, 'ABC234'), 'another user, another hash');
  t.notSame(hashPasscode(key, 1, 'ABC234'), hashPasscode(randomBytes(32), 1, 'ABC234'), 'another key, another hash');
});

t.test('base tokens carry the prefix and 256 bits from the random source', async (t) => {
  const src = scripted(Array.from({ length: 32 }, (_, i) => i));
  const token = newBaseToken(src.fn);
  t.equal(src.drawn(), 32, 'drew 32 bytes');
  t.ok(token.startsWith(TOKEN_PREFIX));
  t.same(Buffer.from(token.slice(TOKEN_PREFIX.length), 'base64url'), Buffer.from(Array.from({ length: 32 }, (_, i) => i)));
  t.ok(isWellFormedToken(token));
  t.notOk(isWellFormedToken(token + 'A'));
  t.notOk(isWellFormedToken('Bearer_hellwall_' + token.slice(15)));
  t.not(newBaseToken(randomBytes), newBaseToken(randomBytes));
});

t.test('master tokens depend on token, MAC and address', async (t) => {
  const key = randomBytes(32);
  const base = masterToken(key, 'tok', '00:11:22:33:44:55', '10.0.0.1');
  t.equal(base.length, 32);
  t.notSame(masterToken(key, 'tok', '00:11:22:33:44:56', '10.0.0.1'), base);
  t.notSame(masterToken(key, 'tok', '00:11:22:33:44:55', '10.0.0.2'), base);
  t.notSame(masterToken(key, 'tok2', '00:11:22:33:44:55', '10.0.0.1'), base);
  t.notSame(masterToken(randomBytes(32), 'tok', '00:11:22:33:44:55', '10.0.0.1'), base);
});

t.test('a rotated token is well formed, deterministic for one nonce, and fresh for another', async (t) => {
  const key = randomBytes(32);
  const old = newBaseToken(randomBytes);
  const nonce = randomBytes(16);
  const next = rotatedToken(key, old, nonce);
  t.ok(isWellFormedToken(next));
  t.equal(rotatedToken(key, old, nonce), next);
  t.not(rotatedToken(key, old, randomBytes(16)), next);
  t.not(rotatedToken(randomBytes(32), old, nonce), next, 'unpredictable without the key');
});

t.test('constant-time comparisons', async (t) => {
  t.ok(constantEquals('abc', 'abc'));
  t.notOk(constantEquals('abc', 'abd'));
  t.notOk(constantEquals('abc', 'abcd'), 'different lengths compare without throwing');
  t.ok(constantEqualsBytes(Buffer.from('xy'), Buffer.from('xy')));
  t.notOk(constantEqualsBytes(Buffer.from('xy'), Buffer.from('xyz')));
});

t.test('normalization of MAC, phone and address', async (t) => {
  t.equal(normalizeMac('00-1A-2B-3C-4D-5E'), '00:1a:2b:3c:4d:5e');
  t.equal(normalizePhone('+1 (555) 010-0.1'), '+155501001');
  t.equal(normalizeIp('::ffff:127.0.0.1'), '127.0.0.1');
  t.equal(normalizeIp('::FFFF:10.1.2.3'), '10.1.2.3');
  t.equal(normalizeIp('2001:DB8::1'), '2001:db8::1');
  t.equal(normalizeIp(undefined), 'unknown');
});

t.test('password hashes verify, reject wrong passwords, and use OWASP scrypt parameters by default', async (t) => {
  t.ok(DEFAULT_SCRYPT.ln >= 15 && DEFAULT_SCRYPT.r >= 8 && DEFAULT_SCRYPT.p >= 3, 'at least N=2^15, r=8, p=3');
  const hasher = new PasswordHasher({ concurrency: 2, queueMax: 10, random: randomBytes });
  const hash = await hasher.hash('correct horse battery staple');
  t.match(hash, /^\$scrypt\$ln=15,r=8,p=3\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
  t.ok(await hasher.verify(hash, 'correct horse battery staple'));
  t.notOk(await hasher.verify(hash, 'correct horse battery stapl'));
  t.notOk(await hasher.verify(hasher.dummyHash, ''), 'the dummy hash matches nothing likely');
  t.notOk(await hasher.verify('garbage', 'x'), 'a malformed stored hash fails closed');
  t.not(await hasher.hash('same'), await hasher.hash('same'), 'salted');
});

t.test('password policy: length 8 to 128, no composition rules', async (t) => {
  t.match(passwordPolicyError('short'), /at least 8/);
  t.equal(passwordPolicyError('eightchr'), null);
  t.equal(passwordPolicyError('all lowercase words are fine'), null);
  t.match(passwordPolicyError('x'.repeat(129)), /at most 128/);
  t.equal(passwordPolicyError('é'.repeat(128)), null, 'counted in characters, not bytes');
});

t.test('the limiter caps concurrency and answers E_BUSY when its queue is full', async (t) => {
  const limiter = new Limiter(2, 1);
  const gates: Array<() => void> = [];
  let running = 0;
  let peak = 0;
  const job = () =>
    limiter.run(async () => {
      running++;
      peak = Math.max(peak, running);
      await new Promise<void>((r) => gates.push(r));
      running--;
    });
  const jobs = [job(), job(), job()];
  await new Promise((r) => setImmediate(r));
  t.equal(limiter.running, 2);
  t.equal(limiter.queued, 1);
  await t.rejects(job(), new ServiceError('busy', 'server is busy; retry later'));
  while (gates.length) {
    gates.shift()!();
    await new Promise((r) => setImmediate(r));
  }
  await Promise.all(jobs);
  t.equal(peak, 2, 'never more than two at once');
  t.equal(limiter.running, 0);
});

t.test('the server key is created once with mode 0600 and derived per purpose', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-key-'));
  const logs = new LogSink();
  const log = createLogger('info', logs);
  const key = loadOrCreateServerKey(dir, randomBytes, log);
  t.equal(key.length, 32);
  t.equal(statSync(path.join(dir, 'server.key')).mode & 0o777, 0o600);
  t.same(loadOrCreateServerKey(dir, randomBytes, log), key, 'the same key on the next start');
  chmodSync(path.join(dir, 'server.key'), 0o644);
  loadOrCreateServerKey(dir, randomBytes, log);
  t.equal(statSync(path.join(dir, 'server.key')).mode & 0o777, 0o600, 'loose permissions are tightened');
  t.equal(logs.find({ msg: 'server key is readable by group or others; tightening to 0600' }).length, 1);
  t.notOk(logs.text.includes(readFileSync(path.join(dir, 'server.key'), 'utf8').trim()), 'the key is never logged');
  const keys = deriveKeys(key);
  const hex = (k: typeof keys.master) => k.export().toString('hex');
  t.equal(new Set([hex(keys.master), hex(keys.passcode), hex(keys.rotate)]).size, 3, 'three different keys');
  t.equal(keys.master.symmetricKeySize, 32);
});
