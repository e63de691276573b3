// Prints the imports under src/ that run against the layering
//   transport -> dispatch -> handlers -> services -> store/mail/audit
// with a shared base (config, deps, errors, log, protocol, codec, net, the metrics interface) that every
// layer may use and that uses nothing above it, and the wiring (main, cli, app, bench) that may use
// everything. Type-only imports count: they tie the layers together just the same.
//   node scripts/import-layers.mjs [ROOT]      ROOT: a checkout (default: this one), e.g. an old
//                                              commit unpacked with `git archive REV src | tar -x -C DIR`
//   --check                                    exit 1 when there is any
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const args = process.argv.slice(2);
const check = args.includes('--check');
const root = path.resolve(args.find((a) => !a.startsWith('--')) ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..'));
const src = path.join(root, 'src');

// First match wins. `rank` orders the request chain; layers without one have rules of their own.
const LAYERS = [
  { name: 'wiring', test: (f) => ['main.ts', 'cli.ts', 'app.ts', 'serve.ts'].includes(f) || f.startsWith('cli/') || f.startsWith('bench/') || f.startsWith('workers/') },
  { name: 'client', test: (f) => f.startsWith('client/') },
  { name: 'exporter', test: (f) => f === 'ops/prometheus.ts' },
  { name: 'dispatch', rank: 2, test: (f) => f === 'server/dispatcher.ts' },
  // The admin console (HTTPS pages): a transport of its own beside the TLS listener, with no
  // dispatcher in front; it calls the handlers' services directly (see `why`).
  { name: 'console', test: (f) => f.startsWith('console/') },
  { name: 'transport', rank: 1, test: (f) => f.startsWith('server/') || f.startsWith('tls/') || f === 'ops/http.ts' },
  { name: 'handlers', rank: 3, test: (f) => f.startsWith('handlers/') },
  { name: 'services', rank: 4, test: (f) => /^(services|primitives|keys)\//.test(f) || f === 'ops/housekeeper.ts' },
  { name: 'store/mail/audit', rank: 5, test: (f) => /^(store|mail|audit)\//.test(f) },
  {
    name: 'base',
    test: (f) => ['config.ts', 'config-schema.ts', 'deps.ts', 'errors.ts', 'log.ts', 'ops/metrics.ts'].includes(f) || /^(protocol|codec|net)\//.test(f),
  },
];
const SERVICE = /-service\.ts$/;
/** Packages that only the wiring (through the exporter) should load. */
const HEAVY = ['prom-client'];

const layerOf = (file) => LAYERS.find((l) => l.test(file)) ?? { name: 'unplaced' };
const byRank = (rank) => LAYERS.find((l) => l.rank === rank).name;

function sourceFiles(dir) {
  return readdirSync(dir, { recursive: true })
    .map((f) => f.split(path.sep).join('/'))
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .sort();
}

/** Every import and `export … from` of a file: the module named, and whether only types come in. */
function importsOf(file) {
  const text = readFileSync(path.join(src, file), 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const out = [];
  for (const node of sf.statements) {
    if (!(ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) || !node.moduleSpecifier) continue;
    const spec = node.moduleSpecifier.text;
    let typeOnly;
    let names = [];
    if (ts.isImportDeclaration(node)) {
      const clause = node.importClause;
      const named = clause?.namedBindings && ts.isNamedImports(clause.namedBindings) ? clause.namedBindings.elements : null;
      names = named ? named.map((e) => (e.propertyName ?? e.name).text) : [];
      typeOnly = Boolean(clause && (clause.isTypeOnly || (!clause.name && named && named.length > 0 && named.every((e) => e.isTypeOnly))));
    } else {
      typeOnly = node.isTypeOnly || Boolean(node.exportClause && ts.isNamedExports(node.exportClause) && node.exportClause.elements.every((e) => e.isTypeOnly));
    }
    if (spec.startsWith('.')) {
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec)).replace(/\.js$/, '.ts');
      out.push({ target, typeOnly, names, local: true });
    } else {
      out.push({ target: spec, typeOnly, names, local: false });
    }
  }
  return out;
}

const files = sourceFiles(src);
const graph = new Map(files.map((f) => [f, importsOf(f)]));

/** The heavy packages a file itself loads when it runs (type-only imports load nothing). */
const heavyLoads = (file) => (graph.get(file) ?? []).filter((i) => !i.typeOnly && !i.local && HEAVY.includes(i.target)).map((i) => i.target);

function why(from, to) {
  const a = layerOf(from);
  const b = layerOf(to);
  if (a.name === 'wiring') return null;
  if (a.name === 'unplaced' || b.name === 'unplaced') return `not placed in a layer (${a.name} -> ${b.name}): add it to LAYERS`;
  if (a.name === 'console') {
    return ['console', 'base', 'handlers', 'services', 'store/mail/audit'].includes(b.name) ? null : `console imports ${b.name} (it may use handlers, services, store/mail/audit and the base)`;
  }
  if (b.name === 'console') return `${a.name} imports the console (only the wiring starts it)`;
  if (b.name === 'wiring') return `${a.name} imports the wiring`;
  if (b.name === 'exporter') return `${a.name} imports the Prometheus exporter (only the wiring should)`;
  if (b.name === 'client' && a.name !== 'client') return `${a.name} imports the client library`;
  if (a.name === b.name || b.name === 'base') return null;
  if (a.name === 'base' || a.name === 'client' || a.name === 'exporter') return `${a.name} imports ${b.name}`;
  if (b.rank < a.rank) return `upward: ${a.name} imports ${b.name}`;
  if (b.rank > a.rank + 1) {
    const skipped = [];
    for (let r = a.rank + 1; r < b.rank; r++) skipped.push(byRank(r));
    return `skips ${skipped.join(', ')}: ${a.name} imports ${b.name}`;
  }
  return null;
}

const violations = [];
for (const [file, imports] of graph) {
  for (const imp of imports) {
    const from = `src/${file}`;
    if (!imp.local) {
      if (HEAVY.includes(imp.target) && !['wiring', 'exporter'].includes(layerOf(file).name)) {
        violations.push({ from, to: imp.target, typeOnly: imp.typeOnly, why: `${layerOf(file).name} loads ${imp.target}` });
      }
      continue;
    }
    const to = `src/${imp.target}`;
    const reason = why(file, imp.target);
    if (reason) violations.push({ from, to, typeOnly: imp.typeOnly, why: reason });
    // A service may use another (its type, to be handed one), but not borrow its dependency bag:
    // each declares what it needs.
    const borrowed = SERVICE.test(file) && SERVICE.test(imp.target) ? imp.names.filter((n) => /Deps$/.test(n)) : [];
    if (borrowed.length > 0) violations.push({ from, to, typeOnly: imp.typeOnly, why: `borrows ${borrowed.join(', ')}, another service's dependencies` });
    // Reported where the package comes in (an import of a module that loads it), not at every
    // module further up: those go away with it.
    const heavy = imp.typeOnly || ['wiring', 'exporter'].includes(layerOf(file).name) ? [] : heavyLoads(imp.target);
    if (heavy.length > 0 && layerOf(imp.target).name !== 'exporter') {
      violations.push({ from, to, typeOnly: false, why: `${layerOf(file).name} loads ${heavy.join(', ')} through ${to}` });
    }
  }
}

const width = Math.max(0, ...violations.map((v) => v.from.length));
for (const v of violations) {
  console.log(`${v.from.padEnd(width)} -> ${v.to}${v.typeOnly ? ' (types only)' : ''}\n${' '.repeat(width)}    ${v.why}`);
}
console.log(`${violations.length} import(s) against the layering in ${files.length} files under ${path.relative(process.cwd(), src) || src}`);
if (check && violations.length > 0) process.exit(1);
