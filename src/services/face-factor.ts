import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../deps.js';
import { ServiceError, type ServiceErrorKind } from '../errors.js';
import type { SecretBox } from '../keys/secret-box.js';
import type { FactorRecord, Store, StoreOps } from '../store/store.js';
import type { FaceEngine } from './face-engine.js';
import { decodeTemplate, encodeTemplate, sameFace } from './face-match.js';
import type { FaceRefusal } from './face-pool.js';
import type { Factor, FactorContext, FactorSubject, VerifyOutcome } from './factors.js';

/** The `user_secrets` kind the template is sealed under (bound into the ciphertext). */
export const FACE_SECRET_KIND = 'face';

/** Each engine refusal as the service error (and so the wire code) the client gets. */
const REFUSAL_KIND: Readonly<Record<FaceRefusal, { kind: ServiceErrorKind; message: string }>> = {
  not_jpeg: { kind: 'face-image', message: 'the face image is not a readable JPEG' },
  too_large: { kind: 'face-image', message: 'the face image has too many pixels' },
  no_face: { kind: 'face-none', message: 'no face found in the image' },
  several_faces: { kind: 'face-several', message: 'more than one face in the image' },
  face_too_small: { kind: 'face-small', message: 'the face in the image is too small' },
};

export interface FaceFactorDeps {
  readonly store: Store;
  readonly secrets: SecretBox;
  readonly clock: Clock;
  readonly engine: FaceEngine;
  readonly audit: AuditLog;
  /** Descriptor distance below which two images are one face (README "Face factor": measured). */
  readonly threshold: number;
}

/**
 * Face verification as a second factor (off by default; SECURITY.md says what it is not). The
 * template is the 128-d descriptor of the enrolment image, sealed with the SecretBox under kind
 * `face`: it never leaves the server, is re-sealed on key retirement with every other secret, and
 * goes with the account (cascade). Inference runs in the engine's worker pool; `prepare` does it
 * before the login's transaction, so no database lock waits for a neural network.
 */
export class FaceFactor implements Factor {
  readonly name = 'face' as const;
  readonly #d: FaceFactorDeps;

  constructor(deps: FaceFactorDeps) {
    this.#d = deps;
  }

  /**
   * The descriptor of the one face in `proof` (base64 JPEG). Throws the image's refusal (E_FACE_*),
   * `busy` when the pool's queue is full, `face-unavailable` without the package.
   */
  async prepare(proof: string): Promise<Float32Array> {
    const bytes = Buffer.from(proof, 'base64');
    const result = await this.#d.engine.describe(bytes);
    if (!result.ok) {
      const { kind, message } = REFUSAL_KIND[result.code];
      throw new ServiceError(kind, message);
    }
    return result.descriptor;
  }

  /** First step: the enrolment image's template, stored sealed but not yet counting. */
  async enrollStart(subject: FactorSubject, ctx: FactorContext, proof?: string): Promise<Record<string, unknown>> {
    const { store, clock, secrets, audit } = this.#d;
    const who = { userId: subject.userId, email: subject.email, ip: ctx.ip, mac: ctx.mac, sessionId: ctx.sessionId };
    if (proof === undefined) throw new ServiceError('invalid', 'face enrolment needs an image');
    if (confirmed(await store.listFactors(subject.userId))) {
      audit.record({ action: 'face.enroll', outcome: 'denied', ...who, detail: { reason: 'already-enrolled' } });
      throw new ServiceError('conflict', 'a face is already enrolled; remove it first');
    }
    const descriptor = await this.prepare(proof);
    const now = clock();
    const stored = await store.transaction(async (tx) => {
      const rows = await tx.listFactors(subject.userId);
      // Checked again: another enrolment may have been confirmed while the model ran.
      if (confirmed(rows)) return false;
      const mustEnroll = rows.find((r) => r.factor === this.name)?.mustEnroll ?? false;
      await tx.putSecret(secrets.seal(subject.userId, FACE_SECRET_KIND, encodeTemplate(descriptor), now));
      await tx.putFactor({ userId: subject.userId, factor: this.name, confirmedAt: null, mustEnroll, lastStep: 0, createdAt: now });
      await audit.recordIn(tx, { action: 'face.enroll', outcome: 'success', ...who });
      return true;
    });
    if (!stored) throw new ServiceError('conflict', 'a face is already enrolled; remove it first');
    ctx.log.info({ event: 'face.enroll', userId: subject.userId }, 'face enrolment started; a second image confirms it');
    return { confirmed: false };
  }

  /**
   * Second step: another image of the same face. Only a match makes the factor count, so a template
   * that would never verify (a poor image) is caught now, not at the next login.
   */
  async enrollConfirm(subject: FactorSubject, proof: string, ctx: FactorContext): Promise<Record<string, unknown>> {
    const { store, clock, audit } = this.#d;
    const who = { userId: subject.userId, email: subject.email, ip: ctx.ip, mac: ctx.mac, sessionId: ctx.sessionId };
    const rows = await store.listFactors(subject.userId);
    const row = rows.find((r) => r.factor === this.name);
    if (!row || row.confirmedAt !== null) throw new ServiceError('conflict', 'no face enrolment to confirm: send face.enroll first');
    const descriptor = await this.prepare(proof);
    const confirmedNow = await store.transaction(async (tx) => {
      const again = (await tx.listFactors(subject.userId)).find((r) => r.factor === this.name);
      if (!again || again.confirmedAt !== null) return 'gone' as const;
      if (!(await this.#matches(subject.userId, descriptor, tx))) return 'wrong' as const;
      await tx.putFactor({ ...again, confirmedAt: clock(), mustEnroll: false });
      await audit.recordIn(tx, { action: 'face.confirm', outcome: 'success', ...who });
      return 'ok' as const;
    });
    if (confirmedNow === 'gone') throw new ServiceError('conflict', 'no face enrolment to confirm: send face.enroll first');
    if (confirmedNow === 'wrong') {
      audit.record({ action: 'face.confirm', outcome: 'failure', ...who, detail: { reason: 'no-match' } });
      throw new ServiceError('auth-failed', 'authentication failed');
    }
    ctx.log.info({ event: 'face.confirm', userId: subject.userId }, 'face factor enrolled');
    return { confirmed: true };
  }

  /**
   * Compares against the confirmed template. `prepared` is what `prepare` answered for this proof
   * (the flow calls it before its transaction); without it the model runs here. Never throws for a
   * wrong or unusable image: that is `wrong`.
   */
  async verify(userId: number, proof: string, ops: StoreOps, _now: number, prepared?: unknown): Promise<VerifyOutcome> {
    let descriptor: Float32Array;
    if (prepared instanceof Float32Array) descriptor = prepared;
    else {
      try {
        descriptor = await this.prepare(proof);
      } catch (err) {
        if (err instanceof ServiceError && err.kind.startsWith('face-') && err.kind !== 'face-unavailable') return 'wrong';
        throw err;
      }
    }
    // Only a confirmed enrolment counts; a pending template proves nothing yet.
    if (!confirmed(await ops.listFactors(userId))) return 'wrong';
    return (await this.#matches(userId, descriptor, ops)) ? 'ok' : 'wrong';
  }

  /**
   * face.remove: the operator removes their own face factor, proving it with a current image (a
   * stolen session alone cannot drop a factor). False when none was enrolled.
   */
  async removeWithProof(subject: FactorSubject, proof: string, ctx: FactorContext): Promise<boolean> {
    const { store, audit } = this.#d;
    const who = { userId: subject.userId, email: subject.email, ip: ctx.ip, mac: ctx.mac, sessionId: ctx.sessionId };
    const row = (await store.listFactors(subject.userId)).find((r) => r.factor === this.name);
    if (!row) return false;
    // A pending enrolment is removed without an image: it never counted.
    const descriptor = row.confirmedAt === null ? undefined : await this.prepare(proof);
    const outcome = await store.transaction(async (tx) => {
      const again = (await tx.listFactors(subject.userId)).find((r) => r.factor === this.name);
      if (!again) return 'none' as const;
      if (again.confirmedAt !== null && !(descriptor && (await this.#matches(subject.userId, descriptor, tx)))) return 'wrong' as const;
      await this.remove(subject.userId, tx);
      await audit.recordIn(tx, { action: 'face.remove', outcome: 'success', ...who });
      return 'removed' as const;
    });
    if (outcome === 'wrong') {
      audit.record({ action: 'face.remove', outcome: 'failure', ...who, detail: { reason: 'no-match' } });
      throw new ServiceError('auth-failed', 'authentication failed');
    }
    if (outcome === 'removed') ctx.log.info({ event: 'face.remove', userId: subject.userId }, 'face factor removed');
    return outcome === 'removed';
  }

  async remove(userId: number, ops: StoreOps): Promise<boolean> {
    const row = await ops.deleteFactor(userId, this.name);
    const secret = await ops.deleteSecret(userId, FACE_SECRET_KIND);
    return row || secret;
  }

  async #matches(userId: number, descriptor: Float32Array, ops: StoreOps): Promise<boolean> {
    const record = await ops.getSecret(userId, FACE_SECRET_KIND);
    const plain = record && this.#d.secrets.open(record);
    const template = plain && decodeTemplate(plain);
    plain?.fill(0);
    return template !== undefined && sameFace(descriptor, template, this.#d.threshold);
  }
}

function confirmed(rows: readonly FactorRecord[]): boolean {
  return rows.some((r) => r.factor === 'face' && r.confirmedAt !== null);
}
