// Compiles the tests once, before tap runs them (`npm test` runs it after `npm run build`):
// test/**/*.ts becomes dist-test/test/**/*.js with source maps, and dist-test/src is a link to
// dist/, so a test's `../../src/x.js` is the built module the server runs from.
//
// Why: tap's TypeScript loader (ts-node) compiled every test and every module it imports again in
// each test process, about 2.5 s of CPU per file and over a hundred files. Here each file is
// transpiled once (no type check: `npm run typecheck` does that, and CI runs it), and only files
// changed since the last run are transpiled again. Coverage still names the .ts sources, through
// the source maps of dist/ (tsc) and of dist-test/ (this script).
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const testDir = path.join(root, 'test');
const outRoot = path.join(root, 'dist-test');
const outDir = path.join(outRoot, 'test');

const { config } = ts.readConfigFile(path.join(testDir, 'tsconfig.json'), ts.sys.readFile);
const parsed = ts.parseJsonConfigFileContent(config, ts.sys, testDir);
// ES modules, as package.json's "type": "module" makes them under NodeNext (transpileModule sees no package.json).
const compilerOptions = { ...parsed.options, module: ts.ModuleKind.ES2022, moduleResolution: ts.ModuleResolutionKind.Bundler, noEmit: false, sourceMap: true, inlineSources: false, declaration: false };

if (!existsSync(path.join(root, 'dist'))) {
  console.error('build-tests: dist/ is missing; run `npm run build` first');
  process.exit(1);
}
mkdirSync(outDir, { recursive: true });
const link = path.join(outRoot, 'src');
if (!isLink(link)) {
  rmSync(link, { recursive: true, force: true });
  symlinkSync('../dist', link, 'dir');
}

// A change to this script or to the compiler options compiles everything again.
const inputsChanged = Math.max(...[fileURLToPath(import.meta.url), path.join(testDir, 'tsconfig.json'), path.join(root, 'tsconfig.json')].map((f) => statSync(f).mtimeMs));

let built = 0;
let kept = 0;
const wanted = new Set();
for (const entry of readdirSync(testDir, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile()) continue;
  const from = path.join(entry.parentPath ?? entry.path, entry.name);
  const rel = path.relative(testDir, from);
  if (!rel.endsWith('.ts') || rel.endsWith('.d.ts')) continue;
  const to = path.join(outDir, rel.replace(/\.ts$/, '.js'));
  wanted.add(to);
  wanted.add(`${to}.map`);
  if (existsSync(to) && statSync(to).mtimeMs >= Math.max(statSync(from).mtimeMs, inputsChanged)) {
    kept++;
    continue;
  }
  const out = ts.transpileModule(readFileSync(from, 'utf8'), { compilerOptions, fileName: from, reportDiagnostics: true });
  const errors = (out.diagnostics ?? []).filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (errors.length > 0) {
    console.error(ts.formatDiagnostics(errors, { getCanonicalFileName: (f) => f, getCurrentDirectory: () => root, getNewLine: () => '\n' }));
    process.exit(1);
  }
  mkdirSync(path.dirname(to), { recursive: true });
  // The map names the .ts file relative to the .js, so tap's coverage and stack traces show it.
  const map = JSON.parse(out.sourceMapText);
  map.sources = [path.relative(path.dirname(to), from)];
  map.file = path.basename(to);
  writeFileSync(`${to}.map`, JSON.stringify(map));
  writeFileSync(to, out.outputText.replace(/\/\/# sourceMappingURL=.*$/m, `//# sourceMappingURL=${path.basename(to)}.map`));
  built++;
}

// A test deleted from test/ must not keep running from here.
let removed = 0;
for (const entry of readdirSync(outDir, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile()) continue;
  const file = path.join(entry.parentPath ?? entry.path, entry.name);
  if (!wanted.has(file)) {
    rmSync(file);
    removed++;
  }
}
console.log(`build-tests: ${built} compiled, ${kept} unchanged, ${removed} removed (dist-test/test)`);

function isLink(p) {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}
