import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import t from 'tap';
import {
  hashRecoveryCode,
  newRecoveryCodes,
  normalizeRecoveryCode,
  totpCode,
  totpSecretBase32,
  totpStep,
  totpUri,
  verifyTotp,
} from '../../src/primitives/totp.js';
import { openWith, sealWith } from '../../src/keys/secret-box.js';
import { deriveKeys } from '../../src/keys/keys.js';
import { seededRandom } from '../helpers/services.js';

// RFC 6238 Appendix B: the seeds are the ASCII digits repeated to the hash's block-size key length.
const SEED = {
  sha1: Buffer.from('12345678901234567890'),
  sha256: Buffer.from('12345678901234567890123456789012'),
  sha512: Buffer.from('1234567890123456789012345678901234567890123456789012345678901234'),
} as const;
const VECTORS: Array<[number, string, string, string]> = [
  [59, '94287082', '46119246', '90693936'],
  [1111111109, '07081804', '68084774', '25091201'],
  [1111111111, '14050471', '67062674', '99943326'],
  [1234567890, '89005924', '91819424', '93441116'],
  [2000000000, '69279037', '90698825', '38618901'],
  [20000000000, '65353130', '77737706', '47863826'],
];

t.test('RFC 6238 Appendix B vectors pass for SHA-1, SHA-256 and SHA-512', async (t) => {
  for (const [seconds, sha1, sha256, sha512] of VECTORS) {
    const at = seconds * 1000;
    t.equal(totpCode(SEED.sha1, at, { digits: 8 }), sha1, `SHA-1 at ${seconds}`);
    t.equal(totpCode(SEED.sha256, at, { digits: 8, algorithm: 'sha256' }), sha256, `SHA-256 at ${seconds}`);
    t.equal(totpCode(SEED.sha512, at, { digits: 8, algorithm: 'sha512' }), sha512, `SHA-512 at ${seconds}`);
    t.equal(verifyTotp(SEED.sha512, sha512, at, { digits: 8, algorithm: 'sha512' }), totpStep(at), 'and verify, answering the step');
  }
});

t.test('accepts one step of drift either side and nothing beyond', async (t) => {
  const secret = SEED.sha1;
  const at = 1_700_000_000_000;
  const code = totpCode(secret, at);
  const step = totpStep(at);
  t.equal(verifyTotp(secret, code, at), step, 'same step');
  t.equal(verifyTotp(secret, code, at + 30_000), step, 'the client one step behind');
  t.equal(verifyTotp(secret, code, at - 30_000), step, 'the client one step ahead');
  t.equal(verifyTotp(secret, code, at + 60_000), null, 'two steps behind is refused');
  t.equal(verifyTotp(secret, code, at - 60_000), null, 'two steps ahead is refused');
  t.equal(verifyTotp(secret, '12345', at), null, 'wrong length');
  t.equal(verifyTotp(secret, 'abcdef', at), null, 'not digits');
});

t.test('the otpauth URI names issuer and account and carries the base32 secret', async (t) => {
  const uri = totpUri({ issuer: 'Hellwall', account: 'alice@example.com', secret: SEED.sha1 });
  t.match(uri, /^otpauth:\/\/totp\/Hellwall:alice(%40|@)example\.com\?/);
  const q = new URL(uri).searchParams;
  t.equal(q.get('secret'), 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ');
  t.equal(q.get('issuer'), 'Hellwall');
  t.equal(totpSecretBase32(SEED.sha1), 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ');
});

// An independent implementation: Debian's oathtool computes the code from the same base32 secret.
const OATHTOOL = '/usr/bin/oathtool';
t.test('codes made by oathtool are accepted', { skip: !existsSync(OATHTOOL) && !process.env.HELLWALL_REQUIRE_TOOLCHAINS ? 'oathtool is not installed' : false }, async (t) => {
  const random = seededRandom(7);
  for (let i = 0; i < 5; i++) {
    const secret = random(20);
    const at = 1_600_000_000_000 + i * 7_919_000;
    const iso = new Date(at).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
    const code = execFileSync(OATHTOOL, ['--totp', '-b', `--now=${iso}`, totpSecretBase32(secret)], { encoding: 'utf8' }).trim();
    t.equal(code, totpCode(secret, at), `oathtool and otplib agree at ${iso}`);
    t.equal(verifyTotp(secret, code, at), totpStep(at), 'and the code verifies');
  }
});

t.test('recovery codes are ten, distinct, typed-friendly, and hashed per user', async (t) => {
  const codes = newRecoveryCodes(seededRandom(1));
  t.equal(codes.length, 10);
  t.equal(new Set(codes).size, 10);
  for (const c of codes) t.match(c, /^[2-9A-HJKMNP-Z]{5}-[2-9A-HJKMNP-Z]{5}$/);
  const n = normalizeRecoveryCode(` ${codes[0]!.toLowerCase()} `);
  t.equal(n, codes[0]!.replace('-', ''));
  t.equal(normalizeRecoveryCode('short'), null);
  t.equal(normalizeRecoveryCode('0000000000'), null, 'characters outside the alphabet');
  const key = Buffer.alloc(32, 1);
  t.not(hashRecoveryCode(key, 1, n!).toString('hex'), hashRecoveryCode(key, 2, n!).toString('hex'), 'bound to the user');
});

t.test('a sealed secret opens only with its key, user and kind, and not after tampering', async (t) => {
  const random = seededRandom(3);
  const k1 = { id: 1, ...deriveKeys(Buffer.alloc(32, 1)) };
  const k2 = { id: 2, ...deriveKeys(Buffer.alloc(32, 2)) };
  const plain = Buffer.from('top secret totp seed');
  const sealed = sealWith(k1, 5, 'totp', plain, random);
  t.notOk(sealed.includes(plain), 'the plaintext is not in the ciphertext');
  t.same(openWith(k1, 5, 'totp', sealed), plain);
  t.equal(openWith(k2, 5, 'totp', sealed), undefined, 'another key');
  t.equal(openWith({ ...k1, id: 2 }, 5, 'totp', sealed), undefined, 'the key id is bound');
  t.equal(openWith(k1, 6, 'totp', sealed), undefined, 'another user');
  t.equal(openWith(k1, 5, 'face', sealed), undefined, 'another kind');
  const tampered = Buffer.from(sealed);
  tampered[tampered.length - 1]! ^= 1;
  t.equal(openWith(k1, 5, 'totp', tampered), undefined, 'a flipped bit');
  t.equal(openWith(k1, 5, 'totp', Buffer.alloc(10)), undefined, 'too short');
});
