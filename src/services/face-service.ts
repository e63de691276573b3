import type { AuditLog } from '../audit/audit-log.js';
import type { Config } from '../config.js';
import type { Clock, Logger } from '../deps.js';
import { ServiceError } from '../errors.js';
import type { SecretBox } from '../keys/secret-box.js';
import type { Store } from '../store/store.js';
import { defaultFacePackageDir, FaceEngineLoader } from './face-engine.js';
import { FaceFactor } from './face-factor.js';
import type { FactorContext, FactorSubject } from './factors.js';
import type { Throttle } from './throttle.js';
import type { TokenService } from './token-service.js';

/** Who sends a face command: their session's token and MAC, and the address it came from. */
export interface FaceCaller {
  readonly token: string;
  readonly mac: string;
  readonly seenIp: string;
}

type Command = 'face.enroll' | 'face.confirm' | 'face.remove';

/**
 * The face commands on the wire (face.enroll, face.confirm, face.remove) [P-4.30]: authenticate
 * the session, admit the attempt with the other second-factor attempts (an unusable image counts
 * as much as a wrong face), then hand over to the factor. `face` is null when this server does not
 * offer the factor (`face.enabled` false): every command then answers E_FACE_UNAVAILABLE.
 */
export class FaceService {
  readonly #face: FaceFactor | null;
  readonly #tokens: TokenService;
  readonly #throttle: Throttle;

  constructor(deps: { face: FaceFactor | null; tokens: TokenService; throttle: Throttle }) {
    this.#face = deps.face;
    this.#tokens = deps.tokens;
    this.#throttle = deps.throttle;
  }

  enroll(caller: FaceCaller, image: string, log: Logger): Promise<Record<string, unknown>> {
    return this.#run('face.enroll', caller, log, (face, subject, ctx) => face.enrollStart(subject, ctx, image));
  }

  confirm(caller: FaceCaller, image: string, log: Logger): Promise<Record<string, unknown>> {
    return this.#run('face.confirm', caller, log, (face, subject, ctx) => face.enrollConfirm(subject, image, ctx));
  }

  async remove(caller: FaceCaller, image: string, log: Logger): Promise<boolean> {
    return (await this.#run('face.remove', caller, log, async (face, subject, ctx) => ({ removed: await face.removeWithProof(subject, image, ctx) }))).removed as boolean;
  }

  async #run(
    command: Command,
    caller: FaceCaller,
    log: Logger,
    work: (face: FaceFactor, subject: FactorSubject, ctx: FactorContext) => Promise<Record<string, unknown>>,
  ): Promise<Record<string, unknown>> {
    const session = await this.#tokens.authenticate({ ...caller, command }, log);
    const face = this.#face;
    if (!face) throw new ServiceError('face-unavailable', 'the face factor is not offered by this server');
    const admission = await this.#throttle.admit('passcode.auth', caller.seenIp, session.userEmail);
    const result = await work(face, { userId: session.userId, email: session.userEmail }, { ip: caller.seenIp, mac: session.mac, sessionId: session.id, log });
    // A success releases the attempt like a login does; any refusal above leaves it counted.
    await this.#throttle.succeeded(admission).catch((err: unknown) => log.warn({ event: command, err: (err as Error).message }, 'counters not released; they expire by themselves'));
    return result;
  }
}

/** The face factor's parts as the app wires them (src/app.ts). */
export interface FaceParts {
  /** The factor, for the Factors registry and FaceService; null when `face.enabled` is false. */
  readonly factor: FaceFactor | null;
  /** Its engine: started at listen (to log at once whether it can run), closed with the app. */
  readonly engine: FaceEngineLoader | null;
}

/** Builds the face factor from `face.*` (nothing at all while it is off: the default). */
export function createFaceParts(deps: {
  config: Config['face'];
  store: Store;
  secrets: SecretBox;
  clock: Clock;
  audit: AuditLog;
  log: Logger;
  packageDir?: string | undefined;
}): FaceParts {
  const { config } = deps;
  if (!config.enabled) return { factor: null, engine: null };
  const engine = new FaceEngineLoader(
    {
      packageDir: deps.packageDir ?? defaultFacePackageDir(),
      workers: config.workers,
      queueMax: config.queueMax,
      engine: { minConfidence: FACE_MIN_CONFIDENCE, minFacePixels: config.minFacePixels, maxPixels: config.maxImagePixels, maxSide: FACE_MAX_SIDE },
    },
    deps.log,
  );
  const factor = new FaceFactor({ store: deps.store, secrets: deps.secrets, clock: deps.clock, engine, audit: deps.audit, threshold: config.thresholdMilli / 1000 });
  return { factor, engine };
}

/** Detector confidence for a face to count: face-api's own default, and what the threshold was measured with. */
export const FACE_MIN_CONFIDENCE = 0.5;
/** Images are scaled to this longer side before detection (the detector works at 512 px anyway). */
export const FACE_MAX_SIDE = 1280;
