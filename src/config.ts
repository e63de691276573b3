import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import type { FromSchema } from 'json-schema-to-ts';
import { CONFIG_SCHEMA, type GroupSchema, type OptionSchema } from './config-schema.js';
import { parseTrustedProxies } from './net/trusted-proxies.js';

/** Validated configuration before it is frozen: exactly the schema's type, every option present. */
type ConfigData = FromSchema<typeof CONFIG_SCHEMA>;

type DeepReadonly<T> = { readonly [K in keyof T]: T[K] extends object ? DeepReadonly<T[K]> : T[K] };

/**
 * The configuration as loadConfig returns it: the type of config-schema.ts, read-only. Modules take
 * the part they use (`Pick<Config, 'tokens'>`, `Config['mail']`), not the whole.
 */
export type Config = DeepReadonly<ConfigData>;

export type SmtpSecurity = Config['mail']['smtpSecurity'];

/** One option of the schema with its dotted key: README's table and the env mapping are made from these. */
export interface OptionSpec {
  /** Where it lives in Config, e.g. `tokens.ttlSeconds`. */
  readonly key: string;
  readonly env: string;
  readonly default: string | number | boolean;
  readonly doc: string;
  readonly schema: OptionSchema;
}

function optionsOf(group: GroupSchema, prefix = ''): OptionSpec[] {
  return Object.entries(group.properties).flatMap(([name, node]) => {
    const key = prefix + name;
    if (node.type === 'object') return optionsOf(node, `${key}.`);
    return [{ key, env: node.env, default: node.default, doc: node.description, schema: node }];
  });
}

/** Every option, in the schema's order (README's). */
export const OPTIONS: readonly OptionSpec[] = Object.freeze(optionsOf(CONFIG_SCHEMA));

const OPTION_BY_KEY: ReadonlyMap<string, OptionSpec> = new Map(OPTIONS.map((o) => [o.key, o]));

/**
 * Compiled once, when this module is loaded. `useDefaults` fills every option a layer leaves out.
 * Not `coerceTypes`: ajv would also read null as 0 or '', true as 1, 5 as '5', and only
 * 'true'/'false' as booleans; text is turned into numbers and booleans by fromText instead.
 */
const validate = (() => {
  const ajv = new Ajv({ useDefaults: true, allErrors: false, strict: true });
  ajv.addKeyword({ keyword: 'env', schemaType: 'string' });
  ajv.addFormat('int53', { type: 'number', validate: Number.isSafeInteger });
  return ajv.compile<ConfigData>(CONFIG_SCHEMA);
})();

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** A partial config as read from a file or given by tests: nested plain values. */
export type ConfigInput = { [key: string]: unknown };

function getPath(obj: ConfigInput | undefined, key: string): unknown {
  let cur: unknown = obj;
  for (const part of key.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function setPath(obj: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  let cur = obj;
  for (const part of parts.slice(0, -1)) {
    cur[part] ??= {};
    cur = cur[part] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]!] = value;
}

/**
 * Environment variables are text, and a file or overrides may give a number or a boolean as text
 * too: an integer option takes a decimal integer, a boolean one true/false/1/0. Anything else is
 * left as it is, for the schema to refuse.
 */
function fromText(option: OptionSpec, raw: unknown): unknown {
  if (typeof raw !== 'string') return raw;
  if (option.schema.type === 'integer' && /^-?\d+$/.test(raw.trim())) return Number(raw);
  if (option.schema.type === 'boolean') {
    if (raw === 'true' || raw === '1') return true;
    if (raw === 'false' || raw === '0') return false;
  }
  return raw;
}

const EXPECTED: Readonly<Record<OptionSchema['type'], string>> = {
  string: 'expected a string',
  integer: 'expected an integer',
  boolean: 'expected true or false',
};

/** Why ajv refused an option, in the words the messages have always used. */
function describeError(error: ErrorObject, option: OptionSpec | undefined): string {
  const choices = option?.schema.enum;
  if (choices && (error.keyword === 'enum' || error.keyword === 'type')) return `expected one of ${choices.join(', ')}`;
  switch (error.keyword) {
    case 'type':
      return option ? EXPECTED[option.schema.type] : `expected ${error.params.type}`;
    case 'format':
      return 'expected an integer';
    case 'minimum':
      return `must be at least ${error.params.limit}`;
    case 'maximum':
      return `must be at most ${error.params.limit}`;
    default:
      return error.message ?? error.keyword;
  }
}

/**
 * Lays one source's values over `base` (a valid config, or `{}` for the defaults alone) and
 * validates the result, so that a refused value is reported with the source it came from, even
 * when a later source overrides it.
 */
function overlay(base: object, valueOf: (option: OptionSpec) => unknown, source: (option: OptionSpec) => string): ConfigData {
  const next = structuredClone(base) as Record<string, unknown>;
  for (const option of OPTIONS) {
    const raw = valueOf(option);
    if (raw !== undefined) setPath(next, option.key, fromText(option, raw));
  }
  if (validate(next)) return next;
  const error = validate.errors![0]!;
  const key = error.instancePath.slice(1).replaceAll('/', '.');
  const option = OPTION_BY_KEY.get(key);
  throw new ConfigError(`invalid option ${key} (${option ? source(option) : 'defaults'}): ${describeError(error, option)}`);
}

function deepFreeze<T>(obj: T): T {
  for (const value of Object.values(obj as object)) {
    if (value && typeof value === 'object') deepFreeze(value);
  }
  return Object.freeze(obj);
}

/**
 * Builds the configuration: defaults, then the JSON file named by HELLWALL_CONFIG (or `file`),
 * then environment variables, then `overrides`. Validated and frozen; the only reader of env.
 */
export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  overrides: ConfigInput = {},
  file: string | undefined = env.HELLWALL_CONFIG,
): Config {
  let fromFile: ConfigInput = {};
  if (file) {
    try {
      fromFile = JSON.parse(readFileSync(file, 'utf8')) as ConfigInput;
    } catch (err) {
      throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
    }
  }
  for (const [name, layer] of [['config file', fromFile], ['overrides', overrides]] as const) {
    for (const key of leafKeys(layer)) {
      if (!OPTION_BY_KEY.has(key)) throw new ConfigError(`unknown option ${key} (${name})`);
    }
  }
  const defaults = overlay({}, () => undefined, () => 'defaults');
  const withFile = overlay(defaults, (o) => getPath(fromFile, o.key), () => `config file ${file}`);
  const withEnv = overlay(withFile, (o) => env[o.env], (o) => `env ${o.env}`);
  const config = overlay(withEnv, (o) => getPath(overrides, o.key), () => 'overrides');
  config.dataDir = path.resolve(config.dataDir);
  // A string option with a grammar of its own: parsed here only to refuse a bad list at start-up,
  // naming the option; the app parses it again for the listener (net/trusted-proxies.ts).
  try {
    parseTrustedProxies(config.proxy.trusted);
  } catch (err) {
    throw new ConfigError(`invalid option proxy.trusted: ${(err as Error).message}`);
  }
  checkCombinations(config);
  return deepFreeze(config);
}

/** Options that are each valid but together unsafe or meaningless. */
function checkCombinations(config: Config): void {
  const fail = (keys: string, why: string): never => {
    throw new ConfigError(`invalid option ${keys}: ${why}`);
  };
  const { tokens, tls, mail } = config;
  if (Boolean(tls.certFile) !== Boolean(tls.keyFile)) fail('tls.certFile/tls.keyFile', 'set both or neither');
  // A grace as long as the token's life would let a stolen, rotated-out token be replayed
  // without ever tripping reuse detection.
  if (tokens.graceSeconds >= tokens.ttlSeconds) fail('tokens.graceSeconds', 'must be shorter than tokens.ttlSeconds');
  if (tokens.ttlSeconds > tokens.absoluteSeconds) fail('tokens.ttlSeconds', 'must not exceed tokens.absoluteSeconds');
  // Otherwise a frame of the largest allowed size could never be received in more than one read.
  if (config.maxBufferedBytes < config.maxFrameBytes) fail('maxBufferedBytes', 'must be at least maxFrameBytes');
  if (mail.smtpSecurity === 'none' && mail.smtpUser) {
    fail('mail.smtpSecurity', "'none' with mail.smtpUser would send the SMTP password in clear");
  }
}

function leafKeys(obj: ConfigInput, prefix = ''): string[] {
  const keys: string[] = [];
  for (const [k, v] of Object.entries(obj)) {
    if (k === '$comment') continue;
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v)) keys.push(...leafKeys(v as ConfigInput, key));
    else keys.push(key);
  }
  return keys;
}
