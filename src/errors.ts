// The errors that cross layers, so that no layer imports the one below the next to recognise them:
// the dispatcher and the CLI map these, and only these, to wire codes and exit codes.

/**
 * What a service refuses, by kind. Services throw these and nothing else that a caller is meant
 * to see: the dispatcher turns each kind into its wire code (src/server/dispatcher.ts) and the CLI
 * into its exit code, so no service knows either. `message` may reach the client: it must never
 * carry a secret or say whether an account exists.
 */
export type ServiceErrorKind =
  /** A login failed; which factor is never said [P-4.3]. */
  | 'auth-failed'
  /** A token that does not authenticate a session right now [P-3.6]. */
  | 'unauthenticated'
  /** A valid caller whose role may not do this. */
  | 'forbidden'
  /** The thing named does not exist (or is not the caller's to see). */
  | 'not-found'
  /** The request contradicts the current state (already disabled, own account, duplicate). */
  | 'conflict'
  /** The request is well-formed but not acceptable (policy, range). */
  | 'invalid'
  /** A limit refused the attempt; `retryAfterSeconds` says when to come back. */
  | 'rate-limited'
  /** The server cannot take the work now (queue full, database busy or unreachable); retry. */
  | 'busy'
  /** The request's `clientTime` is too far from the server's clock, or missing where required. */
  | 'clock-skew'
  /** A face image that is not a readable JPEG, or has too many pixels (src/services/face-factor.ts). */
  | 'face-image'
  /** A face image with no face in it. */
  | 'face-none'
  /** A face image with more than one face in it. */
  | 'face-several'
  /** A face image whose face is too small to describe reliably. */
  | 'face-small'
  /** The face factor is asked for but this server cannot run it (packages/face not installed). */
  | 'face-unavailable';

export class ServiceError extends Error {
  override name = 'ServiceError';
  readonly kind: ServiceErrorKind;
  readonly retryAfterSeconds: number | undefined;
  constructor(kind: ServiceErrorKind, message: string, retryAfterSeconds?: number) {
    super(message);
    this.kind = kind;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/**
 * The store could not do the work now: `busy` (another process holds the lock beyond the short
 * wait) or `unavailable` (the database cannot be reached). Nothing was changed that the caller is
 * not told of, and retrying later is right. The backends' own classes (`StoreBusyError`,
 * `StoreUnavailableError` in src/store/store.ts) extend this, so the dispatcher answers E_BUSY
 * without knowing the store. `message` is for the log, never the client: it may name the database.
 */
export abstract class StoreFailure extends Error {
  abstract readonly failure: 'busy' | 'unavailable';
}
