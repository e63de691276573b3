import { readFileSync } from 'node:fs';
import { ConfigError } from '../config.js';
import { ServiceError } from '../errors.js';
import { KeyRingError } from '../keys/key-ring.js';
import { DuplicateUserError, StoreBusyError, StoreConfigError, StoreUnavailableError } from '../store/store.js';
import { commandHelp, groupHelp, isGroup, parseCommand, type Ctx, type Entry } from './command.js';
import { CancelledError, CliError, EXIT, UsageError } from './errors.js';
import type { CliIo } from './io.js';
import { printable } from './output.js';
import { ENTRIES } from './registry.js';

/** The version in package.json (two levels up from src/cli and dist/cli alike). */
export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function topHelp(entries: readonly Entry[]): string {
  const rows = entries.map((e) => [e.name, e.summary] as const);
  const width = Math.max(...rows.map(([n]) => n.length));
  return [
    'Usage: hellwall <command> [options]',
    '',
    'Hellwall: an authentication service for operators. Local commands work on the data directory',
    '(--data-dir, $HELLWALL_DATA_DIR, default ./data); `client` talks to a running server.',
    '',
    'Commands:',
    ...rows.map(([n, s]) => `  ${n.padEnd(width)}  ${s}`),
    '',
    'Global options: --help (-h) on any command, --version, --debug (stack traces of unexpected errors).',
    'Run `hellwall <command> --help` for its options and an example. Exit codes: 0 done, 1 refused,',
    '2 usage, 130 cancelled; `client` adds its own (README "Exit codes").',
  ].join('\n');
}

function context(env: NodeJS.ProcessEnv, io: CliIo): Ctx {
  return {
    env,
    io,
    out: (text) => void io.stdout.write(`${text}\n`),
    note: (text) => void io.stderr.write(`hellwall: ${text}\n`),
    warn: (text) => void io.stderr.write(`hellwall: warning: ${text}\n`),
  };
}

/** Finds the command `argv` names and runs it; `path` is what help and errors call it. */
async function dispatch(argv: readonly string[], env: NodeJS.ProcessEnv, io: CliIo, entries: readonly Entry[]): Promise<number> {
  const ctx = context(env, io);
  const [word, ...rest] = argv;
  if (word === undefined) {
    io.stderr.write(`${topHelp(entries)}\n`);
    return EXIT.usage;
  }
  if (word === 'help' || word === '--help' || word === '-h') {
    // `hellwall help user add` is `hellwall user add --help`.
    if (rest.length > 0) return dispatch([...rest, '--help'], env, io, entries);
    ctx.out(topHelp(entries));
    return EXIT.ok;
  }
  if (word === '--version' || word === '-V' || word === 'version') {
    ctx.out(`hellwall ${version()}`);
    return EXIT.ok;
  }
  const entry = entries.find((e) => e.name === word);
  if (!entry) throw new UsageError(`unknown command ${JSON.stringify(word)}`);
  let path = entry.name;
  let cmd;
  let args = rest;
  if (isGroup(entry)) {
    const [sub, ...more] = rest;
    if (sub === undefined && entry.noCommand) return entry.noCommand(ctx);
    if (sub === undefined || sub === '--help' || sub === '-h') {
      (sub === undefined ? io.stderr : io.stdout).write(`${groupHelp(entry)}\n`);
      return sub === undefined ? EXIT.usage : EXIT.ok;
    }
    cmd = entry.commands.find((c) => c.name === sub);
    if (!cmd) throw new UsageError(`unknown ${entry.name} command ${JSON.stringify(sub)}`);
    path = `${entry.name} ${cmd.name}`;
    args = more;
  } else {
    cmd = entry;
  }
  const parsed = parseCommand(cmd, args, path);
  if (parsed.values.help) {
    ctx.out(commandHelp(cmd, path));
    return EXIT.ok;
  }
  const dataDir = parsed.values['data-dir'];
  const runEnv = typeof dataDir === 'string' ? { ...env, HELLWALL_DATA_DIR: dataDir } : env;
  return cmd.run(context(runEnv, io), parsed);
}

/** The words naming the command in argv (for "see --help"): up to the first option. */
function commandPath(argv: readonly string[], entries: readonly Entry[]): string {
  const entry = entries.find((e) => e.name === argv[0]);
  if (!entry) return '';
  if (isGroup(entry) && entry.commands.some((c) => c.name === argv[1])) return `${entry.name} ${argv[1]}`;
  return entry.name;
}

/**
 * Runs one command line; resolves to the exit code. Everything it prints goes to `io`, so a test
 * calls it in-process. A refusal is one line on stderr; a stack trace only with --debug (or
 * HELLWALL_DEBUG=1), for an error nobody expected.
 */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv, io: CliIo, entries: readonly Entry[] = ENTRIES): Promise<number> {
  const end = argv.indexOf('--');
  const debug = argv.slice(0, end < 0 ? undefined : end).includes('--debug') || env.HELLWALL_DEBUG === '1';
  const words = argv.filter((a, i) => a !== '--debug' || (end >= 0 && i > end));
  const fail = (message: string, code: number, hint = ''): number => {
    io.stderr.write(`hellwall: ${printable(message)}\n${hint}`);
    return code;
  };
  try {
    return await dispatch(words, env, io, entries);
  } catch (err) {
    if (err instanceof CancelledError) {
      io.stderr.write('\n');
      return fail('cancelled', EXIT.cancelled);
    }
    if (err instanceof UsageError) {
      const path = commandPath(words, entries);
      return fail(err.message, EXIT.usage, `(see: hellwall ${path ? `${path} ` : ''}--help)\n`);
    }
    if (err instanceof CliError) return fail(err.message, err.exitCode);
    if (
      err instanceof ConfigError ||
      err instanceof ServiceError ||
      err instanceof DuplicateUserError ||
      err instanceof KeyRingError ||
      // The database as configured cannot be opened, or cannot be reached or is busy now.
      err instanceof StoreConfigError ||
      err instanceof StoreUnavailableError ||
      err instanceof StoreBusyError
    ) {
      return fail(err.message, EXIT.refused);
    }
    if (debug) io.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    return fail(`unexpected error: ${(err as Error).message}${debug ? '' : ' (run again with --debug for details)'}`, EXIT.internal);
  }
}
