import pino, { type DestinationStream, type Logger } from 'pino';
import pinoPretty from 'pino-pretty';

// Belt and braces: code never passes secrets to the logger, and these paths are censored anyway
// in case a future change logs a whole request object.
const SECRET_KEYS = [
  'password',
  'passcode',
  'token',
  'newToken',
  'smtpPass',
  'key',
  'authorization',
  // Second factors (issue 13): the TOTP secret in each form totp.enroll shows it, codes, recovery codes.
  'newPassword',
  'secret',
  'uri',
  'qrPng',
  'qrText',
  'totp',
  'recoveryCode',
  'recoveryCodes',
];

export const REDACT_PATHS: readonly string[] = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((k) => `*.${k}`),
  ...SECRET_KEYS.map((k) => `*.*.${k}`),
];

/** How log lines look: JSON (for collectors), or one readable line each (for a person at a terminal). */
export interface LogFormat {
  /** Readable lines. Default: when the destination is the process's stdout and that is a terminal. */
  readonly pretty?: boolean;
  /** The environment NO_COLOR is read from (https://no-color.org); default process.env. */
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * Readable lines, written synchronously like pino's own destination (a worker-thread transport
 * could lose the last lines at exit). Redaction has already happened: this only re-formats the
 * JSON line pino made.
 */
function prettyTo(destination: { write(text: string): unknown; isTTY?: boolean }, env: NodeJS.ProcessEnv): DestinationStream {
  const format = pinoPretty.prettyFactory({
    colorize: Boolean(destination.isTTY) && !env.NO_COLOR && env.TERM !== 'dumb',
    translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l',
    ignore: 'pid,hostname,service',
  });
  return { write: (line: string) => void destination.write(format(line)) };
}

/**
 * Creates the root logger; tests pass a destination stream and parse the lines. Without a
 * destination it writes to stdout: readable lines when that is a terminal, JSON otherwise.
 */
export function createLogger(level: string, destination?: DestinationStream & { isTTY?: boolean }, format: LogFormat = {}): Logger {
  const env = format.env ?? process.env;
  const pretty = format.pretty ?? (destination === undefined && Boolean(process.stdout.isTTY));
  const target = pretty ? prettyTo(destination ?? process.stdout, env) : destination;
  return pino(
    {
      level,
      base: { service: 'hellwall' },
      redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    target,
  );
}
