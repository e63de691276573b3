import { parseArgs } from 'node:util';
import type { CliIo } from './io.js';
import { UsageError } from './errors.js';

// How a command is declared: its options, synopsis, help and example live beside its `run`, and
// parsing, `--help`, the group usage and shell completion are all made from the declaration.

/** One option. `value` names its argument in help (`--email E`); booleans have none. */
export interface OptionDef {
  readonly type: 'string' | 'boolean';
  readonly help: string;
  readonly value?: string;
  readonly short?: string;
  /** The values completion offers (an enum option). */
  readonly choices?: readonly string[];
  /** Completion offers file names for it. */
  readonly file?: boolean;
}

export type OptionDefs = Readonly<Record<string, OptionDef>>;

/** What `run` gets: parsed options (strings, booleans, or undefined when not given) and the rest. */
export interface Parsed {
  readonly values: Readonly<Record<string, string | boolean | undefined>>;
  readonly positionals: readonly string[];
}

/** What every command runs with. `env` already carries `--data-dir` as HELLWALL_DATA_DIR. */
export interface Ctx {
  readonly env: NodeJS.ProcessEnv;
  readonly io: CliIo;
  /** One line (or several) on stdout. */
  out(text: string): void;
  /** `hellwall: <text>` on stderr. */
  note(text: string): void;
  /** `hellwall: warning: <text>` on stderr. */
  warn(text: string): void;
}

export interface Command {
  /** The word after its group (`list`), or the top-level word for a command without a group. */
  readonly name: string;
  /** One line, for the group's usage. */
  readonly summary: string;
  /** Positional arguments in the synopsis, e.g. `ID`; absent: none are accepted. */
  readonly args?: string;
  /** How many positionals at least / at most (default: 0..0, or 1..1 when `args` is set). */
  readonly arity?: readonly [number, number];
  readonly options: OptionDefs;
  /** What it does, beyond the summary: a few lines, wrapped by hand. */
  readonly details?: string;
  /** At least one example command line. */
  readonly examples: readonly string[];
  /** Works on the local data directory: gets `--data-dir D`. */
  readonly local?: boolean;
  run(ctx: Ctx, args: Parsed): Promise<number>;
}

/** A word with subcommands (`user add`, `user list`, ...). */
export interface Group {
  readonly name: string;
  readonly summary: string;
  readonly details?: string;
  readonly commands: readonly Command[];
  /**
   * What `hellwall <group>` alone does (the client's interactive menu on a terminal). Absent: the
   * group's usage on stderr, exit 2.
   */
  noCommand?(ctx: Ctx): Promise<number>;
}

export type Entry = Group | Command;

export const isGroup = (e: Entry): e is Group => 'commands' in e;

/** Options every command takes. */
export const HELP_OPTION: OptionDefs = { help: { type: 'boolean', short: 'h', help: 'show this help' } };
export const DATA_DIR_OPTION: OptionDefs = {
  'data-dir': { type: 'string', value: 'D', file: true, help: 'the data directory (default: $HELLWALL_DATA_DIR, else ./data)' },
};
/** For commands that print records. */
export const JSON_OPTION: OptionDefs = { json: { type: 'boolean', help: 'one line of JSON (times as ms since the epoch), for scripts' } };

/** Every option a command accepts, the shared ones included. */
export function allOptions(cmd: Command): OptionDefs {
  return { ...cmd.options, ...(cmd.local && DATA_DIR_OPTION), ...HELP_OPTION };
}

/** Parses `args` as `cmd` declares; UsageError for anything it does not declare. */
export function parseCommand(cmd: Command, args: readonly string[], path: string): Parsed {
  const defs = allOptions(cmd);
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      allowPositionals: true,
      strict: true,
      options: Object.fromEntries(
        Object.entries(defs).map(([name, d]) => [name, { type: d.type, ...(d.short !== undefined && { short: d.short }) }]),
      ),
    });
  } catch (err) {
    // node:util's messages name the option and say what is wrong ("Unknown option '--x'").
    throw new UsageError((err as Error).message.split('. To specify')[0]!);
  }
  const { values, positionals } = parsed;
  if (values.help) return { values, positionals };
  const [min, max] = cmd.arity ?? (cmd.args ? [1, 1] : [0, 0]);
  if (positionals.length > max) throw new UsageError(`${path}: unexpected argument ${JSON.stringify(positionals[max])}`);
  if (positionals.length < min) throw new UsageError(`${path} needs ${cmd.args}`);
  return { values, positionals };
}

function optionLine(name: string, d: OptionDef): [string, string] {
  const flag = `${d.short ? `-${d.short}, ` : '    '}--${name}${d.value ? ` ${d.value}` : ''}`;
  return [flag, d.help + (d.choices ? ` (${d.choices.join(', ')})` : '')];
}

function columns(rows: ReadonlyArray<readonly [string, string]>, indent = '  '): string {
  const width = Math.min(32, Math.max(...rows.map(([a]) => a.length)));
  return rows.map(([a, b]) => (a.length > width ? `${indent}${a}\n${indent}${' '.repeat(width)}  ${b}` : `${indent}${a.padEnd(width)}  ${b}`)).join('\n');
}

/** The synopsis: `hellwall user add --email E --phone P [--role R]`. Required options are those the summary marks. */
export function synopsis(cmd: Command, path: string): string {
  return `hellwall ${path} [options]${cmd.args ? ` ${cmd.args}` : ''}`;
}

/** `hellwall <path> --help`: usage, what it does, options, examples. */
export function commandHelp(cmd: Command, path: string): string {
  const opts = Object.entries(allOptions(cmd)).map(([n, d]) => optionLine(n, d));
  return [
    `Usage: ${synopsis(cmd, path)}`,
    '',
    cmd.summary,
    ...(cmd.details ? ['', cmd.details] : []),
    '',
    'Options:',
    columns(opts),
    '',
    'Example:',
    ...cmd.examples.map((e) => `  ${e}`),
  ].join('\n');
}

/** `hellwall <group>` alone, or with --help: its commands. */
export function groupHelp(group: Group): string {
  return [
    `Usage: hellwall ${group.name} <command> [options]`,
    '',
    group.summary,
    ...(group.details ? ['', group.details] : []),
    '',
    'Commands:',
    columns(group.commands.map((c) => [`${c.name}${c.args ? ` ${c.args}` : ''}`, c.summary])),
    '',
    `Run \`hellwall ${group.name} <command> --help\` for a command's options and an example.`,
  ].join('\n');
}

/** Option value accessors: `need` for required text, `text` for optional, `flag` for booleans. */
export function need(args: Parsed, name: string): string {
  const v = args.values[name];
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${name} is required`);
  return v;
}

export function text(args: Parsed, name: string): string | undefined {
  const v = args.values[name];
  return typeof v === 'string' ? v : undefined;
}

export function flag(args: Parsed, name: string): boolean {
  return args.values[name] === true;
}
