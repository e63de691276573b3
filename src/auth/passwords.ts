import { scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { RandomBytes } from '../deps.js';
import { Limiter } from './limiter.js';

export interface ScryptParams {
  /** log2 of the CPU/memory cost N. */
  readonly ln: number;
  readonly r: number;
  readonly p: number;
}

// OWASP Password Storage Cheat Sheet lists N=2^15, r=8, p=3 (32 MiB) among its equivalent minimums
// for scrypt. Node's scrypt runs on the libuv pool, so it never blocks the event loop.
export const DEFAULT_SCRYPT: ScryptParams = Object.freeze({ ln: 15, r: 8, p: 3 });
const KEY_BYTES = 32;
const SALT_BYTES = 16;

export const PASSWORD_MIN = 8;
export const PASSWORD_MAX = 128;

interface Parsed {
  params: ScryptParams;
  salt: Buffer;
  hash: Buffer;
}

function scryptAsync(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  const N = 2 ** params.ln;
  const options: ScryptOptions = { N, r: params.r, p: params.p, maxmem: 256 * N * params.r + 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFKC'), salt, KEY_BYTES, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** PHC-style string: `$scrypt$ln=15,r=8,p=3$<salt>$<hash>` (base64, no padding). */
function format(params: ScryptParams, salt: Buffer, hash: Buffer): string {
  const b64 = (b: Buffer): string => b.toString('base64').replace(/=+$/, '');
  return `$scrypt$ln=${params.ln},r=${params.r},p=${params.p}$${b64(salt)}$${b64(hash)}`;
}

function parse(encoded: string): Parsed | null {
  const m = /^\$scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/.exec(encoded);
  if (!m) return null;
  return {
    params: { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) },
    salt: Buffer.from(m[4]!, 'base64'),
    hash: Buffer.from(m[5]!, 'base64'),
  };
}

/** Checks a new password against the policy (NIST SP 800-63B: length limits, no composition rules). */
export function passwordPolicyError(password: string): string | null {
  const length = [...password].length;
  if (length < PASSWORD_MIN) return `password must be at least ${PASSWORD_MIN} characters (12 or more recommended)`;
  if (length > PASSWORD_MAX) return `password must be at most ${PASSWORD_MAX} characters`;
  return null;
}

/**
 * Hashes and verifies passwords with scrypt, through a concurrency limiter. `verify` against
 * `dummyHash` costs the same as a real verification, which is how unknown accounts are made to
 * take as long as known ones.
 */
export class PasswordHasher {
  readonly #limiter: Limiter;
  readonly #random: RandomBytes;
  readonly #params: ScryptParams;
  readonly dummyHash: string;

  constructor(opts: { concurrency: number; queueMax: number; random: RandomBytes; params?: ScryptParams }) {
    this.#limiter = new Limiter(opts.concurrency, opts.queueMax);
    this.#random = opts.random;
    this.#params = opts.params ?? DEFAULT_SCRYPT;
    this.dummyHash = format(this.#params, this.#random(SALT_BYTES), this.#random(KEY_BYTES));
  }

  get limiter(): Limiter {
    return this.#limiter;
  }

  hash(password: string): Promise<string> {
    const salt = this.#random(SALT_BYTES);
    return this.#limiter.run(async () => format(this.#params, salt, await scryptAsync(password, salt, this.#params)));
  }

  /** True when `password` matches `encoded`. A malformed `encoded` is checked as the dummy, and fails. */
  async verify(encoded: string, password: string): Promise<boolean> {
    const parsed = parse(encoded);
    const target = parsed ?? parse(this.dummyHash)!;
    const actual = await this.#limiter.run(() => scryptAsync(password, target.salt, target.params));
    return parsed !== null && actual.length === target.hash.length && timingSafeEqual(actual, target.hash);
  }
}
