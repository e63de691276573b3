/**
 * Second factors beyond the emailed passcode (TOTP today, face next), behind one interface.
 *
 * Contract. A factor is an object implementing `Factor`, listed once in the `Factors` registry that
 * app.ts builds; login (passcode.auth) and every recovery flow ask the registry, never a factor by
 * name, which factors an account has (`status`: confirmed rows of `user_factors`) and which its role
 * requires (`factors.require`, e.g. `{"admin":["totp"]}`), so adding a factor touches the registry's
 * list and nothing in the flows. A factor keeps its state in the store's `user_factors` row
 * (`putFactor`: `confirmedAt` set = it counts; `mustEnroll` = the account must enrol it again before
 * anything else, set by the lost-authenticator recovery) and its secret material sealed with the
 * SecretBox (src/keys/secret-box.ts) in `user_secrets` under its own `kind`, so key rotation and
 * retirement re-seal it with everything else. `enrollStart`/`enrollConfirm` are the two steps of
 * enrolment (the second proves the first worked; only then does the factor count); `verify` checks
 * one proof inside the caller's transaction and consumes it (a TOTP step counts once) and never
 * throws for a wrong proof; `remove` deletes state and secrets in the caller's transaction. A factor
 * does no throttling and no auditing of verification: the flow counts every attempt with the other
 * second-factor failures (Throttle.admit, before it verifies) and audits the outcome without saying
 * which factor failed [P-4.3]; enrolment is the factor's own and it audits that itself.
 */

import { ConfigError } from '../config.js';
import type { Logger } from '../deps.js';
import type { FactorRecord, StoreOps } from '../store/store.js';

/**
 * The only commands an enrolment-only session (scope `enroll`) may make: the enrolment commands of
 * every factor, and logging out. TokenService refuses it everything else, token.check included.
 */
export const ENROLMENT_COMMANDS: ReadonlySet<string> = new Set(['totp.enroll', 'totp.confirm', 'face.enroll', 'face.confirm', 'session.logout']);

/** Every factor this build knows; `factors.require` may name only these. */
export const FACTOR_NAMES = ['totp', 'face'] as const;
export type FactorName = (typeof FACTOR_NAMES)[number];

/** The operator a factor operation is about. */
export interface FactorSubject {
  readonly userId: number;
  readonly email: string;
}

/** Where an enrolment request came from: for the audit row and the log. */
export interface FactorContext {
  readonly ip: string;
  readonly mac: string;
  readonly sessionId: number | null;
  readonly log: Logger;
}

/** How one proof fared. `replay`: right, but already used (a TOTP code in a step already spent). */
export type VerifyOutcome = 'ok' | 'wrong' | 'replay';

export interface Factor {
  readonly name: FactorName;
  /**
   * First step: replaces any unconfirmed enrolment with a new one and answers what the operator
   * needs (TOTP: secret, otpauth URI, QR). Refuses (ServiceError conflict) while a confirmed one
   * exists: re-enrolling needs `remove` first, so a stolen session cannot replace a factor.
   */
  // `proof`: what the first step is made from where the factor needs one (face: the enrolment
  // image); TOTP makes its secret itself and takes none.
  enrollStart(subject: FactorSubject, ctx: FactorContext, proof?: string): Promise<Record<string, unknown>>;
  /**
   * Second step: a proof made with the new enrolment; from then on the factor counts. Answers what
   * is shown once (TOTP: recovery codes). A wrong proof throws ServiceError auth-failed.
   */
  enrollConfirm(subject: FactorSubject, proof: string, ctx: FactorContext): Promise<Record<string, unknown>>;
  /**
   * Optional: the slow part of checking a proof, done before the flow opens its transaction (face:
   * 0.3-0.6 s of inference in a worker pool; no database lock may wait for it). The flow passes
   * what it answers to `verify` as `prepared`. Throws ServiceError for a proof that cannot be
   * checked at all (face: not a JPEG, no face, several faces: each its own wire error) or when the
   * factor cannot run (busy, unavailable); the attempt was already admitted, so it counts.
   */
  prepare?(proof: string): Promise<unknown>;
  /** Checks and consumes one proof against the confirmed enrolment, in `ops` (the caller's transaction). */
  verify(userId: number, proof: string, ops: StoreOps, now: number, prepared?: unknown): Promise<VerifyOutcome>;
  /** Deletes the factor's state and secrets in `ops`; true when it had any. */
  remove(userId: number, ops: StoreOps): Promise<boolean>;
}

/** What an account has and needs, as login and recovery see it. */
export interface FactorStatus {
  /** Confirmed factors: each must be proven where the flow proves factors. */
  readonly has: readonly FactorName[];
  /** Factors the role requires. */
  readonly required: readonly FactorName[];
  /**
   * Factors the account must enrol before anything else: required but not had, or flagged
   * `mustEnroll` (after a lost-authenticator recovery). Non-empty: login yields only an enrolment
   * session.
   */
  readonly missing: readonly FactorName[];
}

/** `factors.require` as configured: role to the factors it requires. */
export type FactorRequirements = ReadonlyMap<string, readonly FactorName[]>;

/**
 * Parses `factors.require`: a JSON object from role name to a list of factor names, e.g.
 * `{"admin":["totp"]}`; empty text is `{}`. Throws ConfigError naming the problem, so a typo stops
 * start-up instead of silently requiring nothing.
 */
export function parseFactorRequirements(text: string): FactorRequirements {
  const trimmed = text.trim();
  if (trimmed === '') return new Map();
  let doc: unknown;
  try {
    doc = JSON.parse(trimmed);
  } catch (err) {
    throw new ConfigError(`factors.require is not JSON: ${(err as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new ConfigError('factors.require must be a JSON object from role to a list of factors, e.g. {"admin":["totp"]}');
  }
  const out = new Map<string, FactorName[]>();
  for (const [role, list] of Object.entries(doc)) {
    if (!Array.isArray(list)) throw new ConfigError(`factors.require.${role} must be a list of factors`);
    const names: FactorName[] = [];
    for (const name of list) {
      if (!(FACTOR_NAMES as readonly unknown[]).includes(name)) {
        throw new ConfigError(`factors.require.${role}: unknown factor ${JSON.stringify(name)} (known: ${FACTOR_NAMES.join(', ')})`);
      }
      if (!names.includes(name as FactorName)) names.push(name as FactorName);
    }
    out.set(role, names);
  }
  return out;
}

/** The factors this server offers, and what each role requires of them. */
export class Factors {
  readonly #byName: ReadonlyMap<FactorName, Factor>;
  readonly #require: FactorRequirements;

  constructor(list: readonly Factor[], require: FactorRequirements) {
    this.#byName = new Map(list.map((f) => [f.name, f]));
    for (const [role, names] of require) {
      for (const n of names) {
        if (!this.#byName.has(n)) throw new ConfigError(`factors.require.${role}: factor ${n} is not available in this server`);
      }
    }
    this.#require = require;
  }

  /** The factor by name; undefined when this server does not offer it. */
  get(name: string): Factor | undefined {
    return this.#byName.get(name as FactorName);
  }

  /** Every factor offered, in registry order. */
  get all(): readonly Factor[] {
    return [...this.#byName.values()];
  }

  /** What `role` requires. */
  required(role: string): readonly FactorName[] {
    return this.#require.get(role) ?? [];
  }

  /** The account's factors and needs, read in `ops` (the caller's transaction, or the store). */
  async status(user: { readonly id: number; readonly role: string }, ops: StoreOps): Promise<FactorStatus> {
    return statusOf(await ops.listFactors(user.id), this.required(user.role), this.#byName);
  }
}

/** Pure part of `Factors.status`, for tests and for callers that already hold the rows. */
export function statusOf(
  rows: readonly FactorRecord[],
  required: readonly FactorName[],
  offered: ReadonlyMap<FactorName, Factor>,
): FactorStatus {
  const has: FactorName[] = [];
  const flagged: FactorName[] = [];
  for (const r of rows) {
    const name = r.factor as FactorName;
    // A row of a factor this build no longer offers cannot be proven: it neither counts nor blocks.
    if (!offered.has(name)) continue;
    if (r.confirmedAt !== null) has.push(name);
    else if (r.mustEnroll) flagged.push(name);
  }
  const missing = [...new Set([...required.filter((n) => !has.includes(n)), ...flagged])];
  return { has, required, missing };
}
