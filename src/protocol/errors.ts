/**
 * The error registry as TypeScript. protocol/errors.json is the source; a test fails when the two
 * differ, so `ErrorCode` is always the set of codes the server can answer.
 */
export const ERROR_CODES = [
  'E_FRAME_EMPTY',
  'E_FRAME_TOO_LARGE',
  'E_FRAME_INVALID_UTF8',
  'E_FRAME_INVALID_JSON',
  'E_FRAME_NOT_OBJECT',
  'E_SCHEMA',
  'E_UNKNOWN_COMMAND',
  'E_AUTH_FAILED',
  'E_UNAUTHENTICATED',
  'E_FORBIDDEN',
  'E_NOT_FOUND',
  'E_CONFLICT',
  'E_INVALID',
  'E_BUSY',
  'E_RATE_LIMITED',
  'E_CLOCK_SKEW',
  'E_FACE_IMAGE',
  'E_FACE_NONE',
  'E_FACE_SEVERAL',
  'E_FACE_TOO_SMALL',
  'E_FACE_UNAVAILABLE',
  'E_INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/**
 * A failure a handler reports to the client. `message` is public: it goes on the wire, so it must
 * never carry a secret or say whether an account exists. Anything else belongs in the log.
 */
export class ProtocolError extends Error {
  override name = 'ProtocolError';
  readonly code: ErrorCode;
  /** Extra fields the error schema defines (e.g. `retryAfterSeconds` for E_RATE_LIMITED). */
  readonly details: ErrorDetails | undefined;
  constructor(code: ErrorCode, message: string, details?: ErrorDetails) {
    super(message);
    this.code = code;
    this.details = details;
  }
}

export interface ErrorDetails {
  readonly retryAfterSeconds?: number;
}

export type ErrorResponse = {
  id?: string;
  code?: number;
  status: 'error';
  error: ErrorCode;
  message: string;
  retryAfterSeconds?: number;
};

/** The one serializer of errors: everything the client sees of a failure passes through here. */
export function toErrorResponse(error: ErrorCode, message: string, id?: string, code?: number, details?: ErrorDetails): ErrorResponse {
  // error.response.json caps `message` at 512 characters; never answer outside our own schema.
  const res: ErrorResponse = { status: 'error', error, message: message.length > 512 ? `${message.slice(0, 511)}…` : message };
  if (id !== undefined) res.id = id;
  if (code !== undefined) res.code = code;
  if (details?.retryAfterSeconds !== undefined) res.retryAfterSeconds = details.retryAfterSeconds;
  return res;
}
