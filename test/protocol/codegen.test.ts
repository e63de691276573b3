import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import t, { type Test } from 'tap';
import type { ValidateFunction } from 'ajv';
import { loadProtocol, PROTOCOL_DIR } from '../../src/protocol/registry.js';
import { ROOT } from '../helpers/root.js';

// Proves that protocol/schemas give client authors usable types in other languages, using
// scripts/gen-clients.mjs (quicktype) exactly as they would. Every language is generated and must
// declare a type per message. Where a toolchain exists (Go; Java with Debian's Jackson; Rust with
// Debian's vendored serde crates), the output is compiled and every schema example is read into its
// generated type and written back: what comes out must mean the same JSON and still pass the
// server's own validator. C# and Swift have no compiler here: generated and checked for names only.
//
// A missing toolchain skips its compile, with the reason, unless HELLWALL_REQUIRE_TOOLCHAINS is set
// (CI sets it), in which case it fails: a green CI run must mean the languages were really compiled.

// Cold compiles (Go's standard library, serde's proc macros) on a shared 2-core machine can take
// longer than tap's 30 s default per file.
t.setTimeout(300_000);

const REQUIRE_TOOLCHAINS = !!process.env.HELLWALL_REQUIRE_TOOLCHAINS;
/** Where Debian's librust-*-dev packages put crate sources, usable as an offline cargo registry. */
const DEBIAN_CARGO_REGISTRY = '/usr/share/cargo/registry';
/** Debian's libjackson2-*-java jars. */
const JACKSON_JARS = ['jackson-databind', 'jackson-core', 'jackson-annotations'].map((j) => `/usr/share/java/${j}.jar`);

interface GenClients {
  LANGUAGES: Record<string, { lang: string; file: string; options: string[] }>;
  messageSchemas(): string[];
  generateLanguage(outDir: string, name: string): { files: string[]; warnings: string[] };
}
// Imported at run time: the script is plain JavaScript with no type declarations.
const gen = (await import(pathToFileURL(path.join(ROOT, 'scripts', 'gen-clients.mjs')).href)) as GenClients;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
interface Schema {
  title?: string;
  type?: string;
  $ref?: string;
  properties?: Record<string, Schema>;
  definitions?: Record<string, Schema>;
  oneOf?: Schema[];
  items?: Schema;
  examples?: Json[];
}

const protocol = loadProtocol();
const schemaOf = (file: string): Schema => protocol.schemas.get(file) as Schema;

/** The name quicktype gives a schema with this title: "token.check response" → TokenCheckResponse. */
const typeName = (title: string): string =>
  title
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((w) => w[0]!.toUpperCase() + w.slice(1))
    .join('');

// The server's own validators, by schema file: round-tripped output must still be accepted.
const validators = new Map<string, ValidateFunction>();
for (const cmd of protocol.commands.values()) {
  validators.set(cmd.request, cmd.validateRequest);
  validators.set(cmd.response, cmd.validateResponse);
}
const index = JSON.parse(readFileSync(path.join(PROTOCOL_DIR, 'index.json'), 'utf8')) as { errorResponse: string };
validators.set(index.errorResponse, protocol.validateError);
const MESSAGE_FILES = gen.messageSchemas();

/** One message to read into a generated type and write back. */
interface Case {
  file: string;
  type: string;
  label: string;
  json: string;
  /** The control: an unknown field no generated type can keep, so its round trip must differ. */
  control?: boolean;
}

/**
 * Every example in every message schema, as is and with every optional field removed (the smallest
 * message that still validates): absent must stay absent, since a generator that writes absent
 * fields as null produces requests the server rejects. Plus one control case.
 */
function buildCases(): Case[] {
  const cases: Case[] = [];
  for (const file of MESSAGE_FILES) {
    const schema = schemaOf(file);
    const validate = validators.get(file)!;
    const type = typeName(schema.title!);
    (schema.examples ?? []).forEach((example, i) => {
      cases.push({ file, type, label: `${file} example ${i}`, json: JSON.stringify(example) });
      const minimal = { ...(example as Record<string, Json>) };
      for (const key of Object.keys(minimal)) {
        const without = { ...minimal };
        delete without[key];
        if (validate(without)) delete minimal[key];
      }
      if (Object.keys(minimal).length < Object.keys(example as object).length) {
        cases.push({ file, type, label: `${file} example ${i} without optional fields`, json: JSON.stringify(minimal) });
      }
    });
  }
  const first = cases[0]!;
  cases.push({ ...first, label: `control: ${first.label} plus an unknown field`, json: JSON.stringify({ ...JSON.parse(first.json), zzNotInTheSchema: 1 }), control: true });
  return cases;
}
const CASES = buildCases();
const TYPES = [...new Set(CASES.map((c) => c.type))];

/**
 * oneOf outcomes known to lack an example (reported as TODO, not failed). Delete the entry once the
 * schema has the example; any outcome not listed here must have one.
 */
t.test('the round trips cover every message and every oneOf outcome', async (t) => {
  for (const file of MESSAGE_FILES) {
    t.ok(validators.has(file), `${file} has a validator`);
    t.ok(CASES.some((c) => c.file === file && !c.control), `${file} has an example to round-trip`);
    // A oneOf outcome without an example is never read or written by the generated code, so its
    // own fields go untested.
    const schema = schemaOf(file);
    for (const ref of schema.oneOf ?? []) {
      // A branch may be inline or a local reference ("#/definitions/x").
      const branch = ref.$ref?.startsWith('#/definitions/') ? schema.definitions?.[ref.$ref.slice('#/definitions/'.length)] : ref;
      const status = (branch?.properties?.status as { const?: string } | undefined)?.const;
      const covered = (schema.examples ?? []).some((e) => (e as { status?: unknown }).status === status);
      t.ok(covered, `${file}: the "${status}" outcome has an example`);
    }
  }
});

const work = mkdtempSync(path.join(os.tmpdir(), 'hellwall-codegen-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));
const casesFile = path.join(work, 'cases.json');
writeFileSync(casesFile, JSON.stringify(CASES.map(({ type, json }) => ({ type, json }))));

interface Run {
  ok: boolean;
  stdout: string;
  detail: string;
  seconds: number;
}
/** Runs a command to its end without blocking the event loop, so the three compilers run at once. */
function run(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeout?: number }): Promise<Run> {
  const started = performance.now();
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, encoding: 'utf8', timeout: opts.timeout ?? 240_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const seconds = (performance.now() - started) / 1000;
      const e = err as (NodeJS.ErrnoException & { code?: number | string; signal?: string }) | null;
      const how = !e ? 'exit 0' : typeof e.code === 'number' ? `exit ${e.code}${e.signal ? ` (${e.signal})` : ''}` : e.signal ? `killed (${e.signal})` : e.message;
      const detail = `${cmd} ${args.join(' ')}: ${how}\n${stderr ?? ''}${stdout ?? ''}`.slice(0, 8000);
      resolve({ ok: !e, stdout: stdout ?? '', detail, seconds });
    });
  });
}
const has = async (cmd: string, args: string[]): Promise<boolean> => (await run(cmd, args, { cwd: work, timeout: 30_000 })).ok;

/** Skips a toolchain's checks with the reason, or fails when CI requires every toolchain. */
function missing(t: Test, reason: string): void {
  if (REQUIRE_TOOLCHAINS) t.fail(`HELLWALL_REQUIRE_TOOLCHAINS is set but ${reason}`);
  else t.pass('compile and round trip', { skip: reason });
}

/**
 * The properties of a schema (and its oneOf branches) declared with neither `type` nor `$ref`:
 * "any JSON value", like token.check's `data`. Generators type them as their "any" type.
 */
function untypedProperties(s: Schema | undefined, into = new Set<string>()): Set<string> {
  if (!s) return into;
  for (const [name, p] of Object.entries(s.properties ?? {})) {
    if (!p.type && !p.$ref && !p.oneOf) into.add(name);
    untypedProperties(p, into);
  }
  for (const sub of [...(s.oneOf ?? []), ...Object.values(s.definitions ?? {}), ...(s.items ? [s.items] : [])]) untypedProperties(sub, into);
  return into;
}

/**
 * Checks a harness's output: one line per case, "OK <json>" or "ERR <message>". Each real case
 * must come back as the same JSON value (key order and number formatting aside) that the server
 * accepts; the control must not come back unchanged, which shows the comparison can fail.
 *
 * One normalisation: an absent "any JSON" property written back as null counts as absent. quicktype
 * types it as a nullable "any" with no way to tell null from absent (Rust: Option<Value> without
 * skip_serializing_if, even with --skip-serializing-none), and the server does not interpret it.
 * Each occurrence is reported as a comment so the quirk stays visible.
 */
function checkRoundTrips(t: Test, stdout: string): void {
  const lines = stdout.split('\n').filter((l) => l.length > 0);
  t.equal(lines.length, CASES.length, 'the harness answered every case');
  CASES.forEach((c, i) => {
    const line = lines[i] ?? 'ERR no answer';
    const out = line.startsWith('OK ') ? (JSON.parse(line.slice(3)) as Json) : undefined;
    const input = JSON.parse(c.json) as Record<string, Json>;
    if (c.control) {
      t.notSame(out, input, `${c.label}: not returned unchanged (${line.slice(0, 200)})`);
      return;
    }
    if (!t.ok(out !== undefined, `${c.label}: read and written (${line.slice(0, 300)})`)) return;
    const written = out as Record<string, Json>;
    const compared = { ...written };
    for (const name of untypedProperties(schemaOf(c.file))) {
      if (compared[name] === null && !(name in input)) {
        delete compared[name];
        t.comment(`${c.label}: absent "${name}" was written as null`);
      }
    }
    t.strictSame(compared, input, `${c.label}: same JSON after the round trip`);
    const validate = validators.get(c.file)!;
    t.ok(validate(written), `${c.label}: the written JSON passes ${c.file}${validate.errors ? ` ${JSON.stringify(validate.errors)}` : ''}`);
  });
}

// ---------------------------------------------------------------- generation, every language

const generated = new Map<string, string[]>();

t.test('quicktype generates every language without error', async (t) => {
  const started = performance.now();
  // A property with neither `type` nor `$ref` (token.check's `data`) is deliberately "any JSON";
  // quicktype warns that it cannot infer it. Any other warning is a new generator complaint.
  const untyped = new Set<string>();
  for (const file of MESSAGE_FILES) for (const name of untypedProperties(schemaOf(file))) untyped.add(name.toLowerCase());

  for (const name of Object.keys(gen.LANGUAGES)) {
    let result: { files: string[]; warnings: string[] } | undefined;
    try {
      result = gen.generateLanguage(path.join(work, 'generated'), name);
    } catch (err) {
      t.fail(`${name}: ${(err as Error).message}`);
      continue;
    }
    generated.set(name, result.files);
    t.ok(result.files.length > 0, `${name}: files written`);
    // quicktype prints "Issue in line N: <what>" then "N: <the generated line>" per warning.
    const text = result.warnings.join('\n');
    for (const m of text.matchAll(/Issue in line (\d+): (.*)\n\1: (.*)/g)) {
      const [, , what, code] = m;
      const aboutUntyped = what!.includes('cannot infer this type') && [...untyped].some((p) => code!.toLowerCase().includes(p));
      t.ok(aboutUntyped, `${name}: only expected warnings (${what}: ${code!.trim()})`);
    }
    t.equal(text.replace(/Issue in line (\d+): .*\n\1: .*/g, '').trim(), '', `${name}: no unparsed generator output`);
  }
  t.comment(`generation of ${generated.size} languages took ${((performance.now() - started) / 1000).toFixed(1)} s`);
});

t.test('the CLI keeps the contract test/interop relies on', async (t) => {
  // The Python interop tests run `gen-clients.mjs --lang python --out DIR` and import
  // DIR/python/hellwall_types.py.
  const script = path.join(ROOT, 'scripts', 'gen-clients.mjs');
  const out = path.join(work, 'cli');
  const ok = await run(process.execPath, [script, '--lang', 'python', '--out', out], { cwd: ROOT });
  t.ok(ok.ok, 'python generated', { detail: ok.detail });
  t.ok(existsSync(path.join(out, 'python', 'hellwall_types.py')), 'at DIR/python/hellwall_types.py');
  t.same(readdirSync(out), ['python'], 'and no other language');
  t.notOk((await run(process.execPath, [script, '--lang', 'cobol', '--out', out], { cwd: ROOT })).ok, 'an unknown language fails');
  t.notOk((await run(process.execPath, [script, '--out'], { cwd: ROOT })).ok, 'a missing argument fails');
});

/** The declared struct/class names per language (enums and quicktype's helper classes aside). */
const DECLARATIONS: Record<string, (src: string) => string[]> = {
  python: (src) => [...src.matchAll(/^@dataclass\s*\nclass (\w+)/gm)].map((m) => m[1]!),
  go: (src) => [...src.matchAll(/^type (\w+) struct\b/gm)].map((m) => m[1]!),
  java: (src) => [...src.matchAll(/^public class (\w+)/gm)].map((m) => m[1]!).filter((n) => n !== 'Converter'),
  // Partial: quicktype declares each class twice (properties, then FromJson); count it once.
  csharp: (src) => [...new Set([...src.matchAll(/^\s*public partial class (\w+)/gm)].map((m) => m[1]!))],
  rust: (src) => [...src.matchAll(/^pub struct (\w+)/gm)].map((m) => m[1]!),
  swift: (src) => [...src.matchAll(/^(?:public )?struct (\w+)/gm)].map((m) => m[1]!),
};

t.test('each language declares a type per request, response and the error response, and no stray ones', async (t) => {
  const expected = MESSAGE_FILES.map((f) => typeName(schemaOf(f).title!));
  t.equal(new Set(expected).size, expected.length, 'message titles give distinct type names');
  // Names a struct may legitimately have: a titled object schema, or an object `definitions` entry
  // (quicktype names it after its key). A struct named otherwise was named after a property, or is
  // a duplicate (User1, UserClass): a sign the schema needs a title or a shared definition.
  const allowed = new Set<string>();
  const walk = (s: Schema | undefined, key?: string): void => {
    if (!s) return;
    if (s.title && (s.type === 'object' || s.properties || s.oneOf)) allowed.add(typeName(s.title));
    else if (key && s.type === 'object') allowed.add(typeName(key));
    for (const [k, d] of Object.entries(s.definitions ?? {})) walk(d, k);
    for (const p of Object.values(s.properties ?? {})) walk(p);
    for (const sub of s.oneOf ?? []) walk(sub);
    walk(s.items);
  };
  for (const file of protocol.schemas.keys()) walk(schemaOf(file));

  for (const [name, files] of generated) {
    const declared = DECLARATIONS[name]!(files.map((f) => readFileSync(f, 'utf8')).join('\n'));
    for (const type of expected) t.ok(declared.includes(type), `${name} declares ${type}`);
    t.same(declared.filter((d) => !allowed.has(d)), [], `${name}: no struct named after a property or duplicated`);
    t.equal(new Set(declared).size, declared.length, `${name}: no type declared twice`);
  }
  t.equal(generated.size, Object.keys(gen.LANGUAGES).length, 'every language was generated');
});

// ---------------------------------------------------------------- Go

const goRoundTrip = async (t: Test) => {
  const source = generated.get('go')?.find((f) => f.endsWith('.go'));
  if (!source) return t.fail('no Go output');
  if (!(await has('go', ['version']))) return missing(t, 'no `go` on PATH (apt-get install golang-go)');
  const dir = path.join(work, 'build-go');
  const gotmp = path.join(work, 'go-env');
  // Everything Go writes goes under the temp dir (HOME may be odd when tests run as root), and
  // nothing is fetched: the module has no dependencies and there is no proxy.
  const env = {
    ...process.env,
    GOCACHE: path.join(gotmp, 'cache'),
    GOPATH: path.join(gotmp, 'path'),
    GOMODCACHE: path.join(gotmp, 'path', 'mod'),
    GOENV: 'off',
    GOFLAGS: '-mod=mod',
    GOPROXY: 'off',
    GOTOOLCHAIN: 'local',
    GOTELEMETRY: 'off',
    GO111MODULE: 'on',
    CGO_ENABLED: '0', // no C compiler needed on a fresh machine
  };
  mkdirSync(path.join(dir, 'hellwall'), { recursive: true });
  // The generated file is package hellwall, as a client would vendor it: a subpackage of a
  // throwaway module, imported by a main package that dispatches on the type name.
  writeFileSync(path.join(dir, 'hellwall', 'hellwall_types.go'), readFileSync(source));
  const init = await run('go', ['mod', 'init', 'hellwallcheck'], { cwd: dir, env });
  if (!t.ok(init.ok, 'go mod init', { detail: init.detail })) return;
  const dispatch = TYPES.map(
    (ty) => `\tcase "${ty}":\n\t\tv, err := hellwall.Unmarshal${ty}(in)\n\t\tif err != nil {\n\t\t\treturn nil, err\n\t\t}\n\t\treturn v.Marshal()\n`,
  ).join('');
  writeFileSync(
    path.join(dir, 'main.go'),
    `// Generated by test/protocol/codegen.test.ts: reads each case into its generated type with the
// generated Unmarshal function and prints what the generated Marshal writes back.
package main

import (
\t"encoding/json"
\t"fmt"
\t"os"
\t"strings"

\t"hellwallcheck/hellwall"
)

func roundTrip(typ string, in []byte) ([]byte, error) {
\tswitch typ {
${dispatch}\t}
\treturn nil, fmt.Errorf("no case for type %s", typ)
}

func main() {
\traw, err := os.ReadFile(os.Args[1])
\tif err != nil {
\t\tpanic(err)
\t}
\tvar cases []struct {
\t\tType string \`json:"type"\`
\t\tJSON string \`json:"json"\`
\t}
\tif err := json.Unmarshal(raw, &cases); err != nil {
\t\tpanic(err)
\t}
\tfor _, c := range cases {
\t\tout, err := roundTrip(c.Type, []byte(c.JSON))
\t\tif err != nil {
\t\t\tfmt.Println("ERR " + strings.ReplaceAll(err.Error(), "\\n", " "))
\t\t} else {
\t\t\tfmt.Println("OK " + string(out))
\t\t}
\t}
}
`,
  );
  const vet = await run('go', ['vet', './...'], { cwd: dir, env });
  t.ok(vet.ok, 'go vet is clean', { detail: vet.detail });
  const build = await run('go', ['build', '-o', 'roundtrip', '.'], { cwd: dir, env });
  if (!t.ok(build.ok, 'go build', { detail: build.detail })) return;
  const exec = await run(path.join(dir, 'roundtrip'), [casesFile], { cwd: dir, env });
  if (!t.ok(exec.ok, 'the round-trip program ran', { detail: exec.detail })) return;
  checkRoundTrips(t, exec.stdout);
  t.comment(`go vet ${vet.seconds.toFixed(1)} s, go build ${build.seconds.toFixed(1)} s, run ${exec.seconds.toFixed(1)} s`);
};

// ---------------------------------------------------------------- Java

const javaRoundTrip = async (t: Test) => {
  const files = generated.get('java');
  if (!files) return t.fail('no Java output');
  if (!(await has('javac', ['-version'])) || !(await has('java', ['-version']))) return missing(t, 'no `javac`/`java` on PATH (a JDK, e.g. openjdk-17-jdk-headless)');
  const absent = JACKSON_JARS.filter((j) => !existsSync(j));
  if (absent.length) return missing(t, `Jackson jars missing: ${absent.join(', ')} (apt-get install libjackson2-databind-java)`);
  const dir = path.join(work, 'build-java');
  const src = path.join(dir, 'src', 'io', 'hellwall', 'protocol');
  mkdirSync(src, { recursive: true });
  // Converter.java is left out: Debian's security-patched jackson-databind (2.14.0-1+deb12u1)
  // declares `throws IOException` on writeValueAsString, which the generated Converter does not
  // handle; with upstream Jackson it compiles. The harness reads and writes with its own
  // ObjectMapper, set up as Converter does plus NON_NULL (see below), so the classes are what is
  // tested.
  const sources = files.filter((f) => path.basename(f) !== 'Converter.java');
  for (const f of sources) writeFileSync(path.join(src, path.basename(f)), readFileSync(f));
  writeFileSync(
    path.join(dir, 'src', 'RoundTrip.java'),
    `// Generated by test/protocol/codegen.test.ts: reads each case into its generated class and prints
// what Jackson writes back.
import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.File;

public class RoundTrip {
    public static void main(String[] args) throws Exception {
        ObjectMapper mapper = new ObjectMapper();
        // As the generated Converter sets it up.
        mapper.configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);
        // Not in the generated Converter, and needed: otherwise an absent optional field is
        // written as null ("id":null), which the server rejects.
        mapper.setSerializationInclusion(JsonInclude.Include.NON_NULL);
        for (JsonNode c : mapper.readTree(new File(args[0]))) {
            try {
                Class<?> type = Class.forName("io.hellwall.protocol." + c.get("type").asText());
                Object value = mapper.readValue(c.get("json").asText(), type);
                System.out.println("OK " + mapper.writeValueAsString(value));
            } catch (Exception e) {
                System.out.println("ERR " + e.toString().replace('\\n', ' '));
            }
        }
    }
}
`,
  );
  const classpath = JACKSON_JARS.join(path.delimiter);
  const javaSources = [...sources.map((f) => path.join(src, path.basename(f))), path.join(dir, 'src', 'RoundTrip.java')];
  const build = await run('javac', ['-d', path.join(dir, 'classes'), '-cp', classpath, ...javaSources], { cwd: dir });
  if (!t.ok(build.ok, 'javac', { detail: build.detail })) return;
  const exec = await run('java', ['-cp', [path.join(dir, 'classes'), classpath].join(path.delimiter), 'RoundTrip', casesFile], { cwd: dir });
  if (!t.ok(exec.ok, 'the round-trip program ran', { detail: exec.detail })) return;
  checkRoundTrips(t, exec.stdout);
  t.comment(`javac ${build.seconds.toFixed(1)} s, run ${exec.seconds.toFixed(1)} s`);
};

// ---------------------------------------------------------------- Rust

const rustRoundTrip = async (t: Test) => {
  const source = generated.get('rust')?.find((f) => f.endsWith('.rs'));
  if (!source) return t.fail('no Rust output');
  // Cargo's home and target go under the temp dir, so no user configuration or cache applies.
  const env: NodeJS.ProcessEnv = { ...process.env, CARGO_TERM_COLOR: 'never' };
  const version = await rustupAware(env);
  if (!version.ok) return missing(t, `\`cargo --version\` failed (apt-get install cargo, or rustup): ${version.detail.split('\n').slice(0, 3).join(' ')}`);
  const crates = new Set(readdirSafe(DEBIAN_CARGO_REGISTRY).map((d) => d.replace(/-\d.*$/, '')));
  const needed = ['serde', 'serde_derive', 'serde_json'].filter((c) => !crates.has(c));
  if (needed.length) {
    return missing(t, `crates ${needed.join(', ')} missing from ${DEBIAN_CARGO_REGISTRY} (apt-get install librust-serde-dev librust-serde-derive-dev librust-serde-json-dev)`);
  }
  const dir = path.join(work, 'build-rust');
  mkdirSync(path.join(dir, 'src'), { recursive: true });
  mkdirSync(path.join(dir, '.cargo'), { recursive: true });
  writeFileSync(path.join(dir, 'src', 'hellwall_types.rs'), readFileSync(source));
  writeFileSync(
    path.join(dir, 'Cargo.toml'),
    `[package]
name = "hellwall-codegen-check"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
serde = { version = "1", features = ["derive"] }
serde_json = "1"
`,
  );
  // crates.io is not reachable: resolve every crate from the sources Debian installed.
  writeFileSync(
    path.join(dir, '.cargo', 'config.toml'),
    `[source.crates-io]
replace-with = "debian"

[source.debian]
directory = "${DEBIAN_CARGO_REGISTRY}"

[net]
offline = true
`,
  );
  const arms = TYPES.map((ty) => `        "${ty}" => serde_json::from_str::<${ty}>(json).and_then(|v| serde_json::to_string(&v)),\n`).join('');
  writeFileSync(
    path.join(dir, 'src', 'main.rs'),
    `// Generated by test/protocol/codegen.test.ts: reads each case into its generated struct with
// serde_json and prints what serde_json writes back.
mod hellwall_types;
use hellwall_types::*;

fn round_trip(typ: &str, json: &str) -> Result<String, String> {
    let out = match typ {
${arms}        _ => return Err(format!("no case for type {}", typ)),
    };
    out.map_err(|e| e.to_string())
}

fn main() {
    let path = std::env::args().nth(1).expect("cases file");
    let cases: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for c in cases {
        match round_trip(c["type"].as_str().unwrap(), c["json"].as_str().unwrap()) {
            Ok(out) => println!("OK {}", out),
            Err(e) => println!("ERR {}", e.replace('\\n', " ")),
        }
    }
}
`,
  );
  env.CARGO_HOME = path.join(work, 'cargo-home');
  env.CARGO_TARGET_DIR = path.join(dir, 'target');
  const build = await run('cargo', ['build', '--offline', '--quiet'], { cwd: dir, env });
  if (!t.ok(build.ok, 'cargo build', { detail: build.detail })) return;
  const exec = await run(path.join(dir, 'target', 'debug', 'hellwall-codegen-check'), [casesFile], { cwd: dir, env });
  if (!t.ok(exec.ok, 'the round-trip program ran', { detail: exec.detail })) return;
  checkRoundTrips(t, exec.stdout);
  t.comment(`cargo build ${build.seconds.toFixed(1)} s, run ${exec.seconds.toFixed(1)} s`);
};

// ---------------------------------------------------------------- the three compilers at once

t.test('the generated code compiles and round-trips in each language that has a toolchain here', async (t) => {
  // Each compiler works in its own process: run one after another they made this the suite's
  // longest file (about 110 s under load), at once about as long as the slowest.
  t.jobs = 3;
  t.test('Go: the generated package compiles and round-trips every example', goRoundTrip);
  t.test('Java: the generated classes compile against Jackson and round-trip every example', javaRoundTrip);
  t.test('Rust: the generated module compiles with serde and round-trips every example', rustRoundTrip);
});

/**
 * Runs `cargo --version`. A rustup-installed cargo is a proxy that finds its toolchain under
 * RUSTUP_HOME, by default $HOME/.rustup; when tests run with HOME set elsewhere, that fails. Then
 * try the .rustup next to the .cargo/bin the proxy lives in (rustup's standard layout) and keep
 * RUSTUP_HOME in env if that works.
 */
async function rustupAware(env: NodeJS.ProcessEnv): Promise<Run> {
  const first = await run('cargo', ['--version'], { cwd: work, env, timeout: 30_000 });
  if (first.ok || env.RUSTUP_HOME) return first;
  const bin = (env.PATH ?? '').split(path.delimiter).find((d) => d && existsSync(path.join(d, 'cargo')));
  const guess = bin && path.join(bin, '..', '..', '.rustup');
  if (!guess || path.basename(path.dirname(bin)) !== '.cargo' || !existsSync(guess)) return first;
  const second = await run('cargo', ['--version'], { cwd: work, env: { ...env, RUSTUP_HOME: guess }, timeout: 30_000 });
  if (second.ok) env.RUSTUP_HOME = guess;
  return second.ok ? second : first;
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------- C# and Swift

t.test('C# and Swift: generated only (no compiler on this machine)', async (t) => {
  // Their declarations are checked above. Compiling them needs dotnet / swiftc, which CI lacks;
  // this test exists so the report says so instead of silently covering less.
  for (const name of ['csharp', 'swift']) t.ok(generated.has(name), `${name} generated; not compiled`);
});
