// Generates message types for other languages from protocol/schemas with quicktype, the way a
// client author would. Nothing it writes is committed: CI regenerates every language on each run and
// fails on any generator error, so a schema that generators cannot handle is caught here, not by a
// user. test/protocol/codegen.test.ts compiles the Go, Java and Rust output and round-trips every
// schema example through it; the Python interop client (test/interop) imports the Python output.
//
//   node scripts/gen-clients.mjs [--out DIR] [--lang python --lang go ...]
//
// writes DIR/<lang>/<file> (default DIR: build/clients) and prints one line per file written.
// quicktype's warnings (it still wrote the file) go to stderr prefixed with the language.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const schemaDir = path.join(root, 'protocol', 'schemas');
const require = createRequire(import.meta.url);
const quicktype = path.join(path.dirname(require.resolve('quicktype/package.json')), 'dist', 'index.js');

/**
 * Per language: quicktype's name for it, the output file, and the options a client author would
 * pick. The options are part of what CI proves, so each one that is not cosmetic says why.
 */
export const LANGUAGES = {
  python: { lang: 'python', file: 'hellwall_types.py', options: ['--python-version', '3.7'] },
  // --omit-empty: without it an untyped optional field (token.check's `data`) has no `omitempty`
  // tag, so an absent `data` is sent as `"data":null`.
  go: { lang: 'go', file: 'hellwall_types.go', options: ['--package', 'hellwall', '--omit-empty'] },
  // Jackson-annotated classes (no --just-types): the plain types would need hand-written mapping
  // for every enum ("ok" vs OK) to be read or written at all. quicktype writes one file per class
  // into the directory; `file` only names the directory's entry point, Converter.java.
  java: { lang: 'java', file: 'Converter.java', options: ['--package', 'io.hellwall.protocol'] },
  csharp: { lang: 'cs', file: 'HellwallTypes.cs', options: ['--namespace', 'Hellwall.Protocol', '--framework', 'SystemTextJson'] },
  // --skip-serializing-none: without it every absent optional field is sent as null ("id":null),
  // which the server rejects with E_SCHEMA. --no-leading-comments drops a usage comment that
  // quicktype fills with schema titles ("use generated_module::hello request;"), which is not Rust.
  rust: { lang: 'rs', file: 'hellwall_types.rs', options: ['--visibility', 'public', '--skip-serializing-none', '--no-leading-comments'] },
  swift: { lang: 'swift', file: 'HellwallTypes.swift', options: [] },
};

/** The message schemas (every request, response and the error response); common.json is reached by $ref. */
export function messageSchemas() {
  const index = JSON.parse(readFileSync(path.join(root, 'protocol', 'index.json'), 'utf8'));
  const files = index.commands.flatMap((c) => [c.request, c.response]);
  files.push(index.errorResponse);
  return files;
}

/**
 * Generates one language into outDir/<name>/ (emptied first). Returns the files written and
 * quicktype's warnings (lines it printed although it succeeded). Throws on a generator error, with
 * quicktype's output in the message.
 */
export function generateLanguage(outDir, name) {
  const spec = Object.hasOwn(LANGUAGES, name) ? LANGUAGES[name] : undefined;
  if (!spec) throw new Error(`unknown language ${name}; known: ${Object.keys(LANGUAGES).join(', ')}`);
  const dir = path.join(outDir, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  // quicktype resolves common.json relative to the working directory, so run it in schemas/.
  const args = [quicktype, '--src-lang', 'schema', '--lang', spec.lang, ...spec.options, '--out', path.join(dir, spec.file), ...messageSchemas()];
  const res = spawnSync(process.execPath, args, { cwd: schemaDir, encoding: 'utf8', timeout: 120_000 });
  const output = `${res.stderr ?? ''}${res.stdout ?? ''}`.trim();
  if (res.error || res.status !== 0) {
    throw new Error(`quicktype --lang ${spec.lang} failed (${res.error?.message ?? `exit ${res.status}`}):\n${output}`);
  }
  return {
    files: readdirSync(dir).sort().map((f) => path.join(dir, f)),
    warnings: output ? output.split('\n') : [],
  };
}

/** Generates each named language into outDir/<name>/; returns every file written. */
export function generate(outDir, names) {
  return names.flatMap((name) => generateLanguage(outDir, name).files);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  let outDir = path.join(root, 'build', 'clients');
  const names = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--out' && i + 1 < args.length) outDir = path.resolve(args[++i]);
    else if (args[i] === '--lang' && i + 1 < args.length) names.push(args[++i]);
    else {
      console.error(`usage: gen-clients.mjs [--out DIR] [--lang ${Object.keys(LANGUAGES).join('|')}]...`);
      process.exit(2);
    }
  }
  try {
    for (const name of names.length ? names : Object.keys(LANGUAGES)) {
      const { files, warnings } = generateLanguage(outDir, name);
      for (const w of warnings) console.error(`${name}: ${w}`);
      for (const file of files) console.log(path.relative(process.cwd(), file));
    }
  } catch (err) {
    console.error(err.message);
    process.exit(1);
  }
}
