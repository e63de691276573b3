// `node dist/bench/policy-bench.js [--json] [--rounds N] [--calls N]` (after `npm run build`): what
// the authorization policy costs per token check, measured on CompiledPolicy alone, in ns per call.
// `allows()` is what a check calls (cached per role and request); `decide()` is the same decision
// without the cache, i.e. what a request name seen for the first time costs.
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { PolicyLoader, type CompiledPolicy } from '../services/policy.js';
import { AllowAllPolicy, POLICY_DOMAINS as DOMAINS, realisticPolicy } from './bench-policies.js';

type Loop = (policy: CompiledPolicy, role: string, names: readonly string[], calls: number) => number;

// A fresh function per case, so each has its own inline caches: one loop shared by every policy
// would see several classes at its call site and measure polymorphic dispatch instead.
function loop(method: 'allows' | 'decide'): Loop {
  return new Function(
    'policy',
    'role',
    'names',
    'calls',
    `let yes = 0;
     const n = names.length;
     for (let i = 0; i < calls; i++) if (policy.${method}(role, names[i % n])) yes++;
     return yes;`,
  ) as Loop;
}

interface Case {
  readonly name: string;
  readonly method: 'allows' | 'decide';
  readonly names: readonly string[];
}

// Traffic over the policy's whole vocabulary: exact names, deep prefixes, the domain catch-all, public.
const MIXED = DOMAINS.flatMap((d) => [`${d}.read`, `${d}.items.list`, `${d}.items.update`, `${d}.export:csv`, `${d}.rename`, `${d}.config/smtp`]).concat(
  'status.read',
  'health.live',
  'other.thing',
  'x',
);
// More distinct names than the per-role cache holds (4096): every allows() is a miss.
const DISTINCT = Array.from({ length: 5000 }, (_, i) => `${DOMAINS[i % DOMAINS.length]}.items.n${i}`);

const CASES: readonly Case[] = [
  { name: 'allows, 1 name (the wire bench)', method: 'allows', names: ['bench.read'] },
  { name: `allows, ${MIXED.length} names (cached)`, method: 'allows', names: MIXED },
  { name: `decide, ${MIXED.length} names (uncached)`, method: 'decide', names: MIXED },
  { name: 'decide, a name nothing matches', method: 'decide', names: ['zzz.nothing.matches'] },
  { name: `decide, ${DISTINCT.length} names (uncached)`, method: 'decide', names: DISTINCT },
  { name: `allows, ${DISTINCT.length} names (cache misses)`, method: 'allows', names: DISTINCT },
];

interface Measured {
  readonly policy: string;
  readonly case: string;
  /** ns per call, one figure per round (the warm-up round excluded). */
  readonly rounds: number[];
  readonly medianNs: number;
  readonly minNs: number;
  readonly maxNs: number;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function measure(policy: CompiledPolicy, c: Case, rounds: number, calls: number): number[] {
  const run = loop(c.method);
  const out: number[] = [];
  let sink = 0;
  for (let r = 0; r <= rounds; r++) {
    const t0 = performance.now();
    sink += run(policy, 'user', c.names, calls);
    const ns = ((performance.now() - t0) * 1e6) / calls;
    if (r > 0) out.push(ns); // round 0 warms up (and fills the cache)
  }
  // Keep the result observable so the loop cannot be optimized away.
  if (sink === -1) process.stdout.write('');
  return out;
}

function main(): void {
  const { values } = parseArgs({
    options: { json: { type: 'boolean', default: false }, rounds: { type: 'string' }, calls: { type: 'string' } },
  });
  const rounds = Number(values.rounds ?? 7);
  const calls = Number(values.calls ?? 1_000_000);
  if (!Number.isInteger(rounds) || rounds < 1 || !Number.isInteger(calls) || calls < 1000) {
    throw new Error('--rounds must be an integer >= 1 and --calls an integer >= 1000');
  }
  const loader = new PolicyLoader({ file: '', defaultDeny: true });
  const policies: Array<{ name: string; make: () => CompiledPolicy; decides: boolean }> = [
    { name: 'allow-all (nothing evaluated)', make: () => new AllowAllPolicy(), decides: false },
    { name: 'built-in (one * rule)', make: () => loader.load(), decides: true },
    { name: '50 rules with globs', make: () => loader.parse(JSON.stringify(realisticPolicy()), 'bench: 50 rules'), decides: true },
  ];
  const results: Measured[] = [];
  for (const p of policies) {
    for (const c of CASES) {
      // allow-all has no decision without its cache to measure.
      if (c.method === 'decide' && !p.decides) continue;
      // A new instance per case: each starts with an empty cache, as after a reload.
      const ns = measure(p.make(), c, rounds, calls);
      results.push({ policy: p.name, case: c.name, rounds: ns, medianNs: median(ns), minNs: Math.min(...ns), maxNs: Math.max(...ns) });
    }
  }
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ node: process.version, rounds, calls, results }, null, 2)}\n`);
    return;
  }
  process.stdout.write(`policy bench: node ${process.version}, ${rounds} rounds of ${calls} calls; ns per call, median (min–max)\n`);
  for (const c of CASES) {
    process.stdout.write(`${c.name}\n`);
    for (const r of results.filter((x) => x.case === c.name)) {
      process.stdout.write(`  ${r.policy.padEnd(30)} ${r.medianNs.toFixed(1).padStart(7)}  (${r.minNs.toFixed(1)}–${r.maxNs.toFixed(1)})\n`);
    }
  }
}

main();
