import pino, { type DestinationStream, type Logger } from 'pino';

// Belt and braces: code never passes secrets to the logger, and these paths are censored anyway
// in case a future change logs a whole request object.
const SECRET_KEYS = ['password', 'passcode', 'token', 'newToken', 'smtpPass', 'key', 'authorization'];

export const REDACT_PATHS: readonly string[] = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((k) => `*.${k}`),
  ...SECRET_KEYS.map((k) => `*.*.${k}`),
];

/** Creates the root logger; tests pass a destination stream and parse the lines. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'hellwall' },
      redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
