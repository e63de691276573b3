import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { HANDLERS } from '../../src/handlers/index.js';
import { ERROR_CODES } from '../../src/protocol/errors.js';
import { loadProtocol, PROTOCOL_DIR } from '../../src/protocol/registry.js';
import { ROOT } from '../helpers/root.js';

const protocol = loadProtocol();
const readme = readFileSync(path.join(PROTOCOL_DIR, 'README.md'), 'utf8');
const registry = JSON.parse(readFileSync(path.join(PROTOCOL_DIR, 'errors.json'), 'utf8')) as {
  errors: Array<{ code: string; closes: boolean; rule: string }>;
};

type SchemaNode = Record<string, unknown>;
/** A `oneOf` branch, following a local `#/definitions/...` $ref (outcomes are defined once there). */
function branchesOf(schema: SchemaNode): SchemaNode[] {
  const branches = (schema.oneOf as SchemaNode[] | undefined) ?? [schema];
  return branches.map((b) =>
    typeof b.$ref === 'string' && b.$ref.startsWith('#/definitions/')
      ? ((schema.definitions as Record<string, SchemaNode>)[b.$ref.slice('#/definitions/'.length)] ?? b)
      : b,
  );
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name));
}

t.test('the error registry, the TypeScript union, the error schema and the README agree', async (t) => {
  const codes = registry.errors.map((e) => e.code);
  t.same([...ERROR_CODES].sort(), [...codes].sort(), 'src/protocol/errors.ts lists exactly the registry');
  const schema = protocol.schemas.get('error.response.json') as { properties: { error: { enum: string[] } } };
  t.same([...schema.properties.error.enum].sort(), [...codes].sort(), 'error.response.json enumerates exactly the registry');
  for (const e of registry.errors) {
    const row = new RegExp(`\\| \`${e.code}\` \\| ${e.closes ? 'yes' : 'no'} \\| ${e.rule} \\|`);
    t.match(readme, row, `${e.code} is documented in protocol/README.md with closes=${e.closes}`);
  }
});

t.test('every error code the source answers is in the registry', async (t) => {
  const used = new Set<string>();
  for (const file of sourceFiles(path.join(ROOT, 'src'))) {
    for (const m of readFileSync(file, 'utf8').matchAll(/'(E_[A-Z0-9_]+)'/g)) used.add(m[1]!);
  }
  t.ok(used.size >= 5, 'found the codes used in src');
  for (const code of used) t.ok(ERROR_CODES.includes(code as never), `${code} is registered`);
});

t.test('every command has schemas, a handler, a README section and a test', async (t) => {
  const tests = sourceFiles(path.join(ROOT, 'test'))
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => readFileSync(f, 'utf8'))
    .join('\n');
  t.ok(protocol.commands.size >= 4);
  for (const [code, cmd] of protocol.commands) {
    t.ok(protocol.schemas.has(cmd.request), `${cmd.name} request schema exists`);
    t.ok(protocol.schemas.has(cmd.response), `${cmd.name} response schema exists`);
    t.type(HANDLERS[cmd.name], 'function', `${cmd.name} has a handler`);
    t.match(readme, `### \`${cmd.name}\` (code ${code})`, `${cmd.name} has a README section`);
    t.ok(new RegExp(`code: ${code}[,} ]`).test(tests), `${cmd.name} is exercised by a test`);
  }
  t.same(Object.keys(HANDLERS).sort(), [...protocol.commands.values()].map((c) => c.name).sort(), 'no handler without a command');
});

t.test('every rule tag cited in the source is defined in protocol/README.md', async (t) => {
  const defined = new Set([...readme.matchAll(/\*\*\[(P-\d+\.\d+)\]/g)].map((m) => m[1]));
  t.ok(defined.size > 10);
  const files = [...sourceFiles(path.join(ROOT, 'src')), ...readdirSync(path.join(PROTOCOL_DIR, 'schemas')).map((f) => path.join(PROTOCOL_DIR, 'schemas', f))];
  const cited = new Set<string>();
  for (const file of files) for (const m of readFileSync(file, 'utf8').matchAll(/\[(P-\d+\.\d+)\]/g)) cited.add(m[1]!);
  for (const tag of cited) t.ok(defined.has(tag), `${tag} is defined`);
  for (const e of registry.errors) t.ok(defined.has(e.rule), `${e.code}'s rule ${e.rule} is defined`);
});

t.test('every example in every schema validates against its schema', async (t) => {
  let checked = 0;
  for (const [code, cmd] of protocol.commands) {
    for (const [file, validate] of [
      [cmd.request, cmd.validateRequest],
      [cmd.response, cmd.validateResponse],
    ] as const) {
      const examples = (protocol.schemas.get(file)!.examples ?? []) as unknown[];
      t.ok(examples.length > 0, `${file} has examples`);
      for (const ex of examples) {
        t.ok(validate(ex), `${file} example is valid: ${JSON.stringify(validate.errors)}`);
        t.equal((ex as { code: number }).code, code, `${file} example carries code ${code}`);
        checked++;
      }
    }
  }
  for (const ex of (protocol.schemas.get('error.response.json')!.examples ?? []) as unknown[]) {
    t.ok(protocol.validateError(ex), 'error example is valid');
    checked++;
  }
  t.ok(checked >= 9);
});

t.test('every schema field has a description', async (t) => {
  const missing: string[] = [];
  const common = protocol.schemas.get('common.json') as { definitions: Record<string, { description?: string }> };
  // A property that is only a $ref takes its description from the definition it points to.
  const describe = (prop: Record<string, unknown>): unknown =>
    prop.description ?? (typeof prop.$ref === 'string' ? common.definitions[prop.$ref.split('/').pop()!]?.description : undefined);
  const walk = (node: unknown, where: string): void => {
    if (!node || typeof node !== 'object') return;
    const obj = node as Record<string, unknown>;
    if (obj.properties) {
      for (const [name, prop] of Object.entries(obj.properties as Record<string, Record<string, unknown>>)) {
        if (!describe(prop)) missing.push(`${where}.${name}`);
        walk(prop, `${where}.${name}`);
      }
    }
    for (const key of ['oneOf', 'definitions'] as const) {
      const sub = obj[key];
      if (Array.isArray(sub)) sub.forEach((s, i) => walk(s, `${where}.${key}[${i}]`));
      else if (sub) for (const [k, v] of Object.entries(sub)) walk(v, `${where}.${k}`);
    }
  };
  for (const [file, schema] of protocol.schemas) walk(schema, file);
  t.same(missing, []);
});

t.test('the generated TypeScript types match the schemas', async (t) => {
  // Fails when a schema changed without `npm run gen:types`.
  const out = execFileSync(process.execPath, [path.join(ROOT, 'scripts/gen-types.mjs'), '--check'], { encoding: 'utf8' });
  t.equal(out, '');
});

t.test("each command's errors: index.json, its README section and the registry agree", async (t) => {
  for (const [code, cmd] of protocol.commands) {
    const start = readme.indexOf(`### \`${cmd.name}\` (code ${code})`);
    const end = readme.indexOf('\n### ', start + 1);
    const section = readme.slice(start, end < 0 ? readme.indexOf('\n## ', start) : end);
    const line = /\*\*Errors:\*\* (.*)/.exec(section)?.[1] ?? '';
    const documented = [...line.matchAll(/`(E_[A-Z0-9_]+)`/g)].map((m) => m[1]);
    t.same([...documented].sort(), [...cmd.errors].sort(), `${cmd.name}: README's Errors line matches index.json`);
    for (const e of cmd.errors) {
      const entry = protocol.errors.get(e);
      t.ok(entry, `${cmd.name} lists registered ${e}`);
      t.notOk(entry?.closes, `${cmd.name} lists ${e}, which must not be a framing error`);
      t.not(e, 'E_UNKNOWN_COMMAND', 'a command cannot answer that it does not exist');
    }
  }
  // Every per-request error belongs to some command; framing errors and E_UNKNOWN_COMMAND to none.
  const listed = new Set([...protocol.commands.values()].flatMap((c) => c.errors));
  for (const e of protocol.errors.values()) {
    if (!e.closes && e.code !== 'E_UNKNOWN_COMMAND') t.ok(listed.has(e.code), `${e.code} is answered by at least one command`);
  }
});

t.test('schemas use only constructs that code generators handle', async (t) => {
  // The keywords quicktype and json-schema-to-typescript map to types; anything else (allOf,
  // anyOf, if/then, not, patternProperties, ...) would be silently weakened in some language.
  const allowed = new Set([
    '$schema', '$id', '$ref', '$comment', 'title', 'description', 'examples', 'type', 'properties', 'required',
    'additionalProperties', 'enum', 'const', 'pattern', 'minLength', 'maxLength', 'minimum', 'maximum', 'oneOf',
    'definitions', 'items', 'tsType',
  ]);
  const problems: string[] = [];
  const walk = (node: unknown, where: string): void => {
    if (!node || typeof node !== 'object' || Array.isArray(node)) return;
    const obj = node as Record<string, unknown>;
    for (const key of Object.keys(obj)) if (!allowed.has(key)) problems.push(`${where}: keyword ${key}`);
    if (obj.type === 'object' && obj.additionalProperties !== false) problems.push(`${where}: object without additionalProperties: false`);
    if (obj.oneOf) {
      // Every branch must carry a distinct `status` const, so a reader can tell them apart.
      const branches = branchesOf(obj) as Array<{ properties?: { status?: { const?: unknown } } }>;
      const tags = branches.map((b) => b.properties?.status?.const);
      if (tags.some((s) => typeof s !== 'string') || new Set(tags).size !== tags.length) problems.push(`${where}: oneOf without a distinct status const per branch`);
    }
    for (const key of ['properties', 'definitions'] as const) {
      for (const [name, sub] of Object.entries((obj[key] ?? {}) as Record<string, unknown>)) walk(sub, `${where}.${name}`);
    }
    if (obj.items) walk(obj.items, `${where}[]`);
  };
  for (const [file, schema] of protocol.schemas) {
    walk(schema, file);
    t.equal(schema.$id, `https://schemas.hellwall.invalid/v1/${file}`, `${file} has its $id`);
    t.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#', `${file} is draft-07`);
    t.type(schema.title, 'string', `${file} has a title`);
  }
  t.same(problems, []);
});

t.test('every request and response schema pins its command code', async (t) => {
  for (const [code, cmd] of protocol.commands) {
    const request = protocol.schemas.get(cmd.request) as { properties: { code: { const: number } } };
    t.equal(request.properties.code.const, code, `${cmd.request} pins code ${code}`);
    for (const branch of branchesOf(protocol.schemas.get(cmd.response)!) as Array<{ properties: { code: { const: number } } }>) {
      t.equal(branch.properties.code.const, code, `${cmd.response} pins code ${code}`);
    }
  }
});

t.test("every field of every command is named in the command's README section", async (t) => {
  // A field added to a schema but not to the specification fails here.
  const fields = (schema: SchemaNode): string[] => branchesOf(schema).flatMap((b) => Object.keys((b.properties ?? {}) as object));
  for (const [code, cmd] of protocol.commands) {
    const start = readme.indexOf(`### \`${cmd.name}\` (code ${code})`);
    const end = readme.indexOf('\n### ', start + 1);
    const section = readme.slice(start, end < 0 ? readme.indexOf('\n## ', start) : end);
    for (const file of [cmd.request, cmd.response]) {
      for (const field of new Set(fields(protocol.schemas.get(file)!))) {
        if (field === 'code' || field === 'id' || field === 'status') continue; // the envelope, specified in §2
        t.ok(section.includes(`\`${field}\``), `${cmd.name}: \`${field}\` (${file}) is in its README section`);
      }
    }
  }
});
