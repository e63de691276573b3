import { readFileSync } from 'node:fs';
import { loadConfig, OPTIONS, type OptionSpec } from '../config.js';
import { maskUrl } from '../store/open.js';
import { flag, JSON_OPTION, type Command, type Group } from './command.js';
import { json, table } from './output.js';

// `hellwall config show`: the configuration a `serve` started here would use, each value with where
// it came from (the same layering loadConfig applies: defaults, then the file, then env).

/** Options whose value is a secret: shown as `***` when set. */
const SECRET_KEY = /pass(word)?$|secret/i;

function masked(option: OptionSpec, value: unknown): unknown {
  if (typeof value !== 'string' || value === '') return value;
  if (SECRET_KEY.test(option.key)) return '***';
  // A database URL may carry a password.
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? maskUrl(value) : value;
}

function valueAt(obj: unknown, key: string): unknown {
  let cur = obj;
  for (const part of key.split('.')) cur = cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>)[part] : undefined;
  return cur;
}

export interface ConfigRow {
  readonly key: string;
  readonly value: unknown;
  /** `default`, `env HELLWALL_X`, or `file <path>`. */
  readonly source: string;
}

/** Every option's effective value (secrets masked) and its source; loadConfig has validated them. */
export function configRows(env: NodeJS.ProcessEnv): ConfigRow[] {
  const config = loadConfig(env);
  const file = env.HELLWALL_CONFIG;
  // Already read and validated by loadConfig: a second read cannot fail for another reason.
  const fromFile: unknown = file ? JSON.parse(readFileSync(file, 'utf8')) : {};
  return OPTIONS.map((o) => ({
    key: o.key,
    value: masked(o, valueAt(config, o.key)),
    source: env[o.env] !== undefined ? `env ${o.env}` : valueAt(fromFile, o.key) !== undefined ? `file ${file}` : 'default',
  }));
}

const show: Command = {
  name: 'show',
  summary: 'the effective configuration (secrets masked) and where each value came from',
  local: true,
  options: {
    ...JSON_OPTION,
    changed: { type: 'boolean', help: 'only the options not at their default' },
  },
  details: 'Sources: default, env HELLWALL_* (the variable), file (the JSON file $HELLWALL_CONFIG names).\nEnvironment variables win over the file, the file over the defaults.',
  examples: ['hellwall config show', 'HELLWALL_CONFIG=/etc/hellwall.json hellwall config show --changed'],
  run: async (ctx, args) => {
    const rows = configRows(ctx.env).filter((r) => !flag(args, 'changed') || r.source !== 'default');
    if (flag(args, 'json')) ctx.out(json(rows));
    else ctx.out(table(['option', 'value', 'source'], rows.map((r) => [r.key, r.value === '' ? '""' : String(r.value), r.source])));
    return 0;
  },
};

export const configGroup: Group = {
  name: 'config',
  summary: 'the configuration: show',
  commands: [show],
};
