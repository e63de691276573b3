#!/usr/bin/env node
// `npm run fuzz`: the fuzz suite of `npm test` (test/codec/fuzz.test.ts), much longer, with a fresh
// seed each run unless HELLWALL_FUZZ_SEED is set. The seed is printed first and by the suite, so a
// failure replays with HELLWALL_FUZZ_SEED=<seed> HELLWALL_FUZZ_CASES=<cases> npm run fuzz.
// Usage: npm run fuzz [-- <cases>]
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';

const cases = process.argv[2] ?? process.env.HELLWALL_FUZZ_CASES ?? '5000';
const seed = process.env.HELLWALL_FUZZ_SEED ?? String(randomInt(2 ** 31));
if (!/^\d+$/.test(cases)) {
  console.error(`cases must be a positive integer, not ${cases}`);
  process.exit(2);
}
console.log(`fuzz: HELLWALL_FUZZ_SEED=${seed} HELLWALL_FUZZ_CASES=${cases}`);
const child = spawn('npx', ['tap', '--disable-coverage', '--timeout=7200', 'test/codec/fuzz.test.ts'], {
  stdio: 'inherit',
  env: { ...process.env, HELLWALL_FUZZ_SEED: seed, HELLWALL_FUZZ_CASES: cases },
});
child.on('exit', (code, signal) => {
  if (code !== 0) console.error(`fuzz failed: replay with HELLWALL_FUZZ_SEED=${seed} HELLWALL_FUZZ_CASES=${cases} npm run fuzz`);
  process.exit(code ?? (signal ? 1 : 0));
});
