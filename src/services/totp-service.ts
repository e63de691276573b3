import QRCode from 'qrcode';
import type { AuditSink } from '../audit/audit-log.js';
import type { Config } from '../config.js';
import type { Clock, RandomBytes } from '../deps.js';
import { ServiceError } from '../errors.js';
import type { SecretBox } from '../keys/secret-box.js';
import {
  hashRecoveryCode,
  newRecoveryCodes,
  newTotpSecret,
  normalizeRecoveryCode,
  totpSecretBase32,
  totpUri,
  verifyTotp,
} from '../primitives/totp.js';
import type { Store, StoreOps } from '../store/store.js';
import type { Alerts } from './alerts.js';
import type { Factor, FactorContext, FactorSubject, VerifyOutcome } from './factors.js';

/** The `user_secrets` kinds this factor keeps: the TOTP secret, and the key of its recovery-code hashes. */
export const TOTP_SECRET_KIND = 'totp';
export const RECOVERY_KEY_KIND = 'totp-recovery-key';
const RECOVERY_KEY_BYTES = 32;

/** Alerts factors and recovery send (src/services/alerts.ts); optional so tests can leave them out. */
export type FactorAlerts = Pick<Alerts, 'send'>;

export interface TotpFactorDeps {
  readonly config: Pick<Config, 'factors'>;
  readonly store: Store;
  readonly box: SecretBox;
  readonly clock: Clock;
  readonly random: RandomBytes;
  readonly audit: AuditSink;
  readonly alerts?: FactorAlerts;
}

/** What `totp.enroll` answers: everything an authenticator app can take, in each form. */
export interface TotpEnrolment {
  /** Base32, for typing into the app by hand. */
  secret: string;
  uri: string;
  /** The URI as a QR code: PNG, base64. */
  qrPng: string;
  /** The URI as a QR code drawn with Unicode half blocks, for a terminal. */
  qrText: string;
  period: number;
  digits: number;
  algorithm: 'SHA1';
}

/**
 * RFC 6238 TOTP as a second factor (the `Factor` contract in factors.ts), with its recovery codes.
 *
 * State: a `user_factors` row `totp` (`confirmedAt` once the first code proved the enrolment,
 * `lastStep` the last time step a code was accepted in), the secret sealed in `user_secrets`
 * (kind `totp`), and recovery codes as HMACs under a per-user key, itself sealed (kind
 * `totp-recovery-key`): the database alone can neither produce codes nor test guesses at recovery
 * codes offline, and server key retirement re-seals both (src/keys/secret-box.ts).
 */
export class TotpFactor implements Factor {
  readonly name = 'totp' as const;
  readonly #d: TotpFactorDeps;

  constructor(deps: TotpFactorDeps) {
    this.#d = deps;
  }

  async enrollStart(subject: FactorSubject, ctx: FactorContext): Promise<Record<string, unknown>> {
    const { store, box, clock, random, config } = this.#d;
    const now = clock();
    const secret = newTotpSecret(random);
    try {
      const started = await store.transaction(async (tx) => {
        const existing = (await tx.listFactors(subject.userId)).find((f) => f.factor === this.name);
        // A confirmed authenticator is replaced only through recovery (recovery.totp): a stolen
        // session must not be able to swap the operator's second factor for its own.
        if (existing?.confirmedAt != null) return false;
        await tx.putSecret(box.seal(subject.userId, TOTP_SECRET_KIND, secret, now));
        await tx.putFactor({
          userId: subject.userId,
          factor: this.name,
          confirmedAt: null,
          mustEnroll: existing?.mustEnroll ?? false,
          lastStep: 0,
          createdAt: now,
        });
        await this.#d.audit.recordIn(tx, { action: 'totp.enroll', outcome: 'success', at: now, ...who(subject, ctx) });
        return true;
      });
      if (!started) {
        this.#d.audit.record({ action: 'totp.enroll', outcome: 'denied', ...who(subject, ctx), detail: { reason: 'already-enrolled' } });
        throw new ServiceError('conflict', 'an authenticator is already enrolled; remove it through recovery first');
      }
      const uri = totpUri({ issuer: config.factors.totpIssuer, account: subject.email, secret });
      const enrolment: TotpEnrolment = {
        secret: totpSecretBase32(secret),
        uri,
        qrPng: (await QRCode.toBuffer(uri, { type: 'png', errorCorrectionLevel: 'M', margin: 2 })).toString('base64'),
        qrText: await QRCode.toString(uri, { type: 'utf8', errorCorrectionLevel: 'L', margin: 2 }),
        period: 30,
        digits: 6,
        algorithm: 'SHA1',
      };
      ctx.log.info({ event: 'totp.enroll', outcome: 'started', userId: subject.userId }, 'authenticator enrolment started');
      return { ...enrolment };
    } finally {
      secret.fill(0);
    }
  }

  async enrollConfirm(subject: FactorSubject, code: string, ctx: FactorContext): Promise<Record<string, unknown>> {
    const { store, box, clock, random } = this.#d;
    const now = clock();
    const codes = newRecoveryCodes(random);
    const outcome = await store.transaction(async (tx): Promise<'ok' | 'wrong' | 'replay' | 'none'> => {
      const row = (await tx.listFactors(subject.userId)).find((f) => f.factor === this.name);
      if (!row || row.confirmedAt !== null) return 'none';
      const sealed = await tx.getSecret(subject.userId, TOTP_SECRET_KIND);
      const secret = sealed && box.open(sealed);
      if (!secret) return 'none';
      const step = verifyTotp(secret, code, now);
      secret.fill(0);
      if (step === null) return 'wrong';
      if (!(await tx.useFactorStep(subject.userId, this.name, step))) return 'replay';
      await tx.putFactor({ ...row, confirmedAt: now, mustEnroll: false, lastStep: step });
      await this.#putCodes(tx, subject.userId, codes, now);
      await this.#d.audit.recordIn(tx, { action: 'totp.confirm', outcome: 'success', at: now, ...who(subject, ctx), detail: { recoveryCodes: codes.length } });
      return 'ok';
    });
    if (outcome !== 'ok') {
      if (outcome === 'replay') this.#d.audit.record({ action: 'totp.replay', outcome: 'failure', ...who(subject, ctx), detail: { flow: 'totp.confirm' } });
      this.#d.audit.record({ action: 'totp.confirm', outcome: 'failure', ...who(subject, ctx), detail: { reason: outcome } });
      ctx.log.info({ event: 'totp.confirm', outcome: 'failure', reason: outcome, userId: subject.userId }, 'authenticator confirmation refused');
      throw new ServiceError('auth-failed', 'authentication failed');
    }
    ctx.log.info({ event: 'totp.confirm', outcome: 'success', userId: subject.userId }, 'authenticator enrolled');
    this.#d.alerts?.send('totp-enrolled', { id: subject.userId, email: subject.email }, { ip: ctx.ip, mac: ctx.mac });
    return { recoveryCodes: codes };
  }

  async verify(userId: number, code: string, ops: StoreOps, now: number): Promise<VerifyOutcome> {
    const row = (await ops.listFactors(userId)).find((f) => f.factor === this.name);
    if (!row || row.confirmedAt === null) return 'wrong';
    const sealed = await ops.getSecret(userId, TOTP_SECRET_KIND);
    const secret = sealed && this.#d.box.open(sealed);
    if (!secret) return 'wrong';
    const step = verifyTotp(secret, code, now);
    secret.fill(0);
    if (step === null) return 'wrong';
    // [ASVS 2.8.4] Atomic on the row: of two logins racing one code, on any nodes, one wins.
    return (await ops.useFactorStep(userId, this.name, step)) ? 'ok' : 'replay';
  }

  async remove(userId: number, ops: StoreOps): Promise<boolean> {
    const had = await ops.deleteFactor(userId, this.name);
    await ops.deleteSecret(userId, TOTP_SECRET_KIND);
    await ops.deleteSecret(userId, RECOVERY_KEY_KIND);
    await ops.putRecoveryCodes(userId, [], this.#d.clock());
    return had;
  }

  /**
   * Uses one recovery code, in `ops`: true (and how many are left) for the one call that finds it.
   * A code is deleted when used, so it works once.
   */
  async useRecoveryCode(userId: number, code: string, ops: StoreOps): Promise<{ ok: boolean; remaining: number }> {
    const normalized = normalizeRecoveryCode(code);
    const sealed = await ops.getSecret(userId, RECOVERY_KEY_KIND);
    const key = sealed && this.#d.box.open(sealed);
    if (!normalized || !key) return { ok: false, remaining: 0 };
    const ok = await ops.useRecoveryCode(userId, hashRecoveryCode(key, userId, normalized));
    key.fill(0);
    return { ok, remaining: await ops.countRecoveryCodes(userId) };
  }

  /** New recovery codes (the old ones void), in `ops`; answers them, to be shown once. */
  async regenerateCodes(userId: number, ops: StoreOps, now: number): Promise<string[]> {
    const codes = newRecoveryCodes(this.#d.random);
    await this.#putCodes(ops, userId, codes, now);
    return codes;
  }

  /** A fresh per-user hashing key (sealed) and the codes' hashes under it, replacing the old set. */
  async #putCodes(ops: StoreOps, userId: number, codes: readonly string[], now: number): Promise<void> {
    const key = this.#d.random(RECOVERY_KEY_BYTES);
    await ops.putSecret(this.#d.box.seal(userId, RECOVERY_KEY_KIND, key, now));
    await ops.putRecoveryCodes(
      userId,
      codes.map((c) => hashRecoveryCode(key, userId, normalizeRecoveryCode(c)!)),
      now,
    );
    key.fill(0);
  }
}

function who(subject: FactorSubject, ctx: FactorContext): { userId: number; email: string; ip: string; mac: string; sessionId: number | null } {
  return { userId: subject.userId, email: subject.email, ip: ctx.ip, mac: ctx.mac, sessionId: ctx.sessionId };
}
