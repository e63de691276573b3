// The CLI is the one place that turns errors into exit codes (STYLE: services throw typed errors,
// the dispatcher maps them to wire codes, the CLI to exit codes). main.ts does the mapping; a
// command throws one of these, or lets a service's typed error through.

/** Exit codes, as README's "Exit codes" table documents them. */
export const EXIT = {
  /** Done. */
  ok: 0,
  /** Refused: by the service (a ServiceError), the store, the key ring, the configuration. */
  refused: 1,
  /** The command line is wrong; the message says how, and `--help` shows the usage. */
  usage: 2,
  /** Ctrl-C or end of input at a prompt (128 + SIGINT, as shells report it). */
  cancelled: 130,
  /** A defect: an error nobody expected. The message (and with --debug the stack) is on stderr. */
  internal: 70,
} as const;

/** The command line is wrong: exit 2, with the command's usage line. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** The person left a prompt (Ctrl-C, or EOF where an answer was required). */
export class CancelledError extends Error {
  override name = 'CancelledError';
}

/**
 * A failure the command has already put into words: `hellwall: <message>` on stderr and this exit
 * code. Command groups with exit codes of their own (the client's "cannot reach the server")
 * throw this rather than printing and returning.
 */
export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}
