import { createHmac } from 'node:crypto';
import { generateSync, generateURI, ScureBase32Plugin, verifySync, type HashAlgorithm } from 'otplib';
import type { RandomBytes } from '../deps.js';
import { generatePasscode, PASSCODE_ALPHABET } from './passcodes.js';

// RFC 6238 TOTP through otplib v13 (its functional API: generateSync/verifySync with the secret as
// bytes, its default pure-JS crypto, which does SHA-1, SHA-256 and SHA-512: the RFC's Appendix B
// vectors for all three pass in test/primitives/totp.test.ts, so node:crypto HMAC is not needed).
// A check (three steps) costs about 0.5 ms, measured, whether otplib's HMAC or node:crypto's is
// plugged in: negligible beside the login's scrypt, though it runs inside the login transaction.
// Enrolments use what every authenticator app understands: SHA-1, 6 digits, 30 s steps
// (Google Authenticator ignores `algorithm` in the URI), and a 160-bit secret (RFC 4226 §4 R6).

export const TOTP_PERIOD_SECONDS = 30;
export const TOTP_DIGITS = 6;
export const TOTP_SECRET_BYTES = 20;
/** Steps either side of the current one that are accepted (RFC 6238 §5.2: at most one). */
export const TOTP_DRIFT_STEPS = 1;

export interface TotpOptions {
  readonly algorithm?: HashAlgorithm;
  readonly digits?: 6 | 7 | 8;
  readonly period?: number;
}

const base32 = new ScureBase32Plugin();

/** A new secret from the injected CSPRNG. */
export function newTotpSecret(random: RandomBytes): Buffer {
  return random(TOTP_SECRET_BYTES);
}

/** The secret as authenticator apps take it typed in: base32, no padding. */
export function totpSecretBase32(secret: Uint8Array): string {
  return base32.encode(secret, { padding: false });
}

/** The time step `atMs` falls in. */
export function totpStep(atMs: number, period = TOTP_PERIOD_SECONDS): number {
  return Math.floor(atMs / 1000 / period);
}

/** The code for the step `atMs` falls in. */
export function totpCode(secret: Uint8Array, atMs: number, opts: TotpOptions = {}): string {
  return generateSync({
    secret,
    epoch: Math.floor(atMs / 1000),
    algorithm: opts.algorithm ?? 'sha1',
    digits: opts.digits ?? TOTP_DIGITS,
    period: opts.period ?? TOTP_PERIOD_SECONDS,
  });
}

/**
 * Checks `code` at `atMs`, allowing `TOTP_DRIFT_STEPS` either side; answers the step it matched
 * (which the caller records, refusing any step not after the last one used: ASVS 2.8.4), or null.
 * Anything but the right number of digits is refused before any HMAC.
 */
export function verifyTotp(secret: Uint8Array, code: string, atMs: number, opts: TotpOptions = {}): number | null {
  const digits = opts.digits ?? TOTP_DIGITS;
  const period = opts.period ?? TOTP_PERIOD_SECONDS;
  if (code.length !== digits || !/^[0-9]+$/.test(code)) return null;
  const result = verifySync({
    secret,
    token: code,
    epoch: Math.floor(atMs / 1000),
    algorithm: opts.algorithm ?? 'sha1',
    digits,
    period,
    epochTolerance: TOTP_DRIFT_STEPS * period,
  });
  if (!result.valid) return null;
  // otplib types its result as TOTP's or HOTP's; TOTP's carries the step, and delta says it too.
  return 'timeStep' in result && typeof result.timeStep === 'number' ? result.timeStep : totpStep(atMs, period) + result.delta;
}

/** The `otpauth://` URI an authenticator app scans: issuer and account in the label and the query. */
export function totpUri(opts: { issuer: string; account: string; secret: Uint8Array }): string {
  return generateURI({
    issuer: opts.issuer,
    label: opts.account,
    secret: totpSecretBase32(opts.secret),
    algorithm: 'sha1',
    digits: TOTP_DIGITS,
    period: TOTP_PERIOD_SECONDS,
  });
}

// Recovery codes: 10 of them, each 10 characters from the passcode alphabet (no 0/O, 1/I/L), about
// 49 bits: never guessable within the second-factor limits, and typed by a person, so shown in two
// groups of five.
export const RECOVERY_CODE_COUNT = 10;
const RECOVERY_CODE_CHARS = 10;

/** A fresh set of recovery codes, formatted `XXXXX-XXXXX`. */
export function newRecoveryCodes(random: RandomBytes, count = RECOVERY_CODE_COUNT): string[] {
  return Array.from({ length: count }, () => {
    const c = generatePasscode(random, RECOVERY_CODE_CHARS);
    return `${c.slice(0, 5)}-${c.slice(5)}`;
  });
}

/** A typed recovery code as stored: upper case, separators and spaces dropped; null when it cannot be one. */
export function normalizeRecoveryCode(code: string): string | null {
  const c = code.toUpperCase().replace(/[-\s]/g, '');
  if (c.length !== RECOVERY_CODE_CHARS) return null;
  for (const ch of c) if (!PASSCODE_ALPHABET.includes(ch)) return null;
  return c;
}

/**
 * Keyed hash of a recovery code, bound to the user. The key is the user's own, kept sealed
 * (src/keys/secret-box.ts), so hashes in a stolen database cannot be tried offline, and they stay
 * verifiable across server key rotation and retirement (the key is re-sealed, never lost).
 */
export function hashRecoveryCode(key: Buffer, userId: number, normalized: string): Buffer {
  return createHmac('sha256', key).update(`${userId}:${normalized}`).digest();
}
