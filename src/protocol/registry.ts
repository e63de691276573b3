import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { Ajv, type ValidateFunction, type ErrorObject } from 'ajv';

/** protocol/ at the package root; found relative to this file so it works from src/ and dist/. */
export const PROTOCOL_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../protocol');

export interface CommandEntry {
  readonly code: number;
  readonly name: string;
  readonly request: string;
  readonly response: string;
  /** Error codes this command may answer instead of its response (framing errors belong to none). */
  readonly errors: readonly string[];
}

export interface ErrorEntry {
  readonly code: string;
  readonly closes: boolean;
  readonly rule: string;
  readonly meaning: string;
}

export interface CompiledCommand extends CommandEntry {
  readonly validateRequest: ValidateFunction;
  readonly validateResponse: ValidateFunction;
}

export interface Protocol {
  readonly version: string;
  readonly commands: ReadonlyMap<number, CompiledCommand>;
  readonly errors: ReadonlyMap<string, ErrorEntry>;
  readonly validateError: ValidateFunction;
  /** Every schema document by file name, for tests and tooling. */
  readonly schemas: ReadonlyMap<string, Record<string, unknown>>;
}

function readJson(dir: string, file: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as Record<string, unknown>;
}

/**
 * Loads protocol/ and compiles every schema once (at start-up, never per request). Throws if the
 * index names a schema that does not exist, so a broken contract stops the server from starting.
 */
export function loadProtocol(dir: string = PROTOCOL_DIR): Protocol {
  const index = readJson(dir, 'index.json') as unknown as {
    version: string;
    errorResponse: string;
    commands: CommandEntry[];
  };
  const errorFile = readJson(dir, 'errors.json') as unknown as { errors: ErrorEntry[] };
  const ajv = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true });
  ajv.addKeyword('tsType'); // read by the type generator only
  const schemaDir = path.join(dir, 'schemas');
  const schemas = new Map<string, Record<string, unknown>>();
  for (const file of readdirJson(schemaDir)) {
    const schema = readJson(schemaDir, file);
    schemas.set(file, schema);
    ajv.addSchema(schema);
  }
  const compile = (file: string): ValidateFunction => {
    const schema = schemas.get(file);
    if (!schema) throw new Error(`protocol/index.json names missing schema ${file}`);
    return ajv.getSchema(schema.$id as string)!;
  };
  const errors = new Map(errorFile.errors.map((e) => [e.code, e]));
  const commands = new Map<number, CompiledCommand>();
  for (const entry of index.commands) {
    for (const code of entry.errors) {
      if (!errors.has(code)) throw new Error(`protocol/index.json: ${entry.name} lists unregistered error ${code}`);
    }
    commands.set(entry.code, {
      ...entry,
      validateRequest: compile(entry.request),
      validateResponse: compile(entry.response),
    });
  }
  return {
    version: index.version,
    commands,
    errors,
    validateError: compile(index.errorResponse),
    schemas,
  };
}

function readdirJson(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort();
}

/** Describes the first schema violation for a human, without echoing the offending value. */
export function describeSchemaError(errors: ErrorObject[] | null | undefined): string {
  const first = errors?.[0];
  if (!first) return 'request does not match its schema';
  const where = first.instancePath || '(request)';
  if (first.keyword === 'additionalProperties') {
    // The name is client input: echo only a bounded prefix of it.
    const name = String((first.params as { additionalProperty: string }).additionalProperty);
    return `${where} has unknown field "${name.length > 64 ? `${name.slice(0, 64)}…` : name}"`;
  }
  if (first.keyword === 'required') {
    return `${where} is missing required field "${String((first.params as { missingProperty: string }).missingProperty)}"`;
  }
  return `${where} ${first.message ?? 'is invalid'}`;
}
