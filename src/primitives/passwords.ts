import { scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { RandomBytes } from '../deps.js';
import { commonPasswordKey, isCommonPassword } from './common-passwords.js';
import { Limiter, type JobTicket } from './limiter.js';

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
/** Below this a password is accepted with a warning (NIST SP 800-63B asks for 8; OWASP ASVS V2.1.1 for 12). */
export const PASSWORD_RECOMMENDED = 12;
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
    // NFKC (NIST SP 800-63B §5.1.1.2) so that the same password typed on another keyboard or OS
    // (composed vs decomposed accents, full-width forms) still matches. Every stored hash since the
    // first release was made this way, so verification needs no fallback to the raw string.
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

/** The scrypt parameters a stored hash was made with, or null when it is not a well-formed hash. */
export function hashParams(encoded: string): ScryptParams | null {
  return parse(encoded)?.params ?? null;
}

/** Length in Unicode code points of the form that is hashed (NFKC), which is what the limits count. */
function passwordLength(password: string): number {
  return [...password.normalize('NFKC')].length;
}

/**
 * Checks a new password against the policy (NIST SP 800-63B §5.1.1.2, OWASP ASVS V2.1): 8 to 128
 * code points after NFKC normalization (and at most 128 as typed), not a listed common password,
 * not the account's own email address or the service's name; no composition rules. Returns why it
 * is refused, or null. The message never repeats the password: it may reach logs or a terminal.
 */
export function passwordPolicyError(password: string, context: { email?: string } = {}): string | null {
  const length = passwordLength(password);
  if (length < PASSWORD_MIN) return `password must be at least ${PASSWORD_MIN} characters (${PASSWORD_RECOMMENDED} or more recommended)`;
  // The typed form too: the protocol refuses a password over 128 code points as sent
  // (protocol/schemas/common.json), so a longer one could be stored but never used to log in.
  if (length > PASSWORD_MAX || [...password].length > PASSWORD_MAX) return `password must be at most ${PASSWORD_MAX} characters`;
  // The whole password, case-insensitively: a substring match would refuse good passphrases that
  // merely contain a common word.
  if (isCommonPassword(password)) return 'password is on a list of commonly used passwords; choose another';
  const key = commonPasswordKey(password);
  const email = context.email?.toLowerCase();
  const contextual = ['hellwall', ...(email ? [email, email.split('@')[0]!] : [])];
  if (contextual.includes(key)) return "password must not be the account's email address or the service's name";
  return null;
}

/** A warning for a password the policy accepts but that is shorter than recommended, or null. */
export function passwordPolicyWarning(password: string): string | null {
  const length = passwordLength(password);
  return length < PASSWORD_RECOMMENDED
    ? `password is shorter than the recommended ${PASSWORD_RECOMMENDED} characters; a longer passphrase is stronger`
    : null;
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
  readonly #concurrency: number;
  readonly dummyHash: string;

  constructor(opts: { concurrency: number; queueMax: number; random: RandomBytes; params?: ScryptParams }) {
    this.#limiter = new Limiter(opts.concurrency, opts.queueMax);
    this.#concurrency = opts.concurrency;
    this.#random = opts.random;
    this.#params = opts.params ?? DEFAULT_SCRYPT;
    this.dummyHash = format(this.#params, this.#random(SALT_BYTES), this.#random(KEY_BYTES));
  }

  get limiter(): Limiter {
    return this.#limiter;
  }

  /** The parameters new hashes are made with. */
  get params(): ScryptParams {
    return this.#params;
  }

  /** `ticket` says whose work it is, for the limiter's fair queue (see Limiter). */
  hash(password: string, ticket?: JobTicket): Promise<string> {
    const salt = this.#random(SALT_BYTES);
    return this.#limiter.run(async () => format(this.#params, salt, await scryptAsync(password, salt, this.#params)), ticket);
  }

  /** True when `password` matches `encoded`. A malformed `encoded` is checked as the dummy, and fails. */
  async verify(encoded: string, password: string, ticket?: JobTicket): Promise<boolean> {
    const parsed = parse(encoded);
    const target = parsed ?? parse(this.dummyHash)!;
    const actual = await this.#limiter.run(() => scryptAsync(password, target.salt, target.params), ticket);
    return parsed !== null && actual.length === target.hash.length && timingSafeEqual(actual, target.hash);
  }

  /**
   * True when `encoded` is a well-formed hash made with weaker settings than the current ones: any
   * scrypt parameter lower, or a shorter salt. Stronger or equal hashes are kept, so lowering
   * the parameters never downgrades a stored hash. Only scrypt hashes exist (and verify) today; a
   * second algorithm would make every hash of another id need a rehash here.
   */
  needsRehash(encoded: string): boolean {
    const parsed = parse(encoded);
    if (!parsed) return false;
    const stored = parsed.params;
    const current = this.#params;
    return (
      stored.ln < current.ln ||
      stored.r < current.r ||
      stored.p < current.p ||
      parsed.salt.length < SALT_BYTES
    );
  }

  /**
   * `hash`, but only when a hashing slot is free right now; otherwise null and nothing is done.
   * For background work (rehashing after a login) that must never wait in the queue, where it would
   * take a place a client's request needs and could turn that request into E_BUSY.
   */
  hashIfIdle(password: string): Promise<string> | null {
    if (this.#limiter.running >= this.#concurrency) return null;
    return this.hash(password);
  }
}
