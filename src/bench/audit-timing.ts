// `npm run audit:timing`: measures, over the real TLS wire with production scrypt parameters, how
// long the server takes to answer requests for an existing account and for an unknown one, and
// reports the difference with a 95 % confidence interval. Enumeration resistance [P-4.2] claims
// the difference is indistinguishable from noise; this is how an operator (or CI) checks it.
//
//   node dist/bench/audit-timing.js [--rounds N] [--json]
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { buildApp } from '../app.js';
import { HellwallClient } from '../client/client.js';
import { loadConfig } from '../config.js';
import { createLogger } from '../log.js';
import type { Mailer } from '../mail/mailer.js';

const USER = { email: 'audit@example.com', phone: '+15550100', role: 'user', password: 'audit password 0123456789' };
const MAC = '02:00:5e:00:aa:01';

interface Summary {
  readonly n: number;
  readonly meanMs: number;
  readonly medianMs: number;
  readonly sdMs: number;
}

function summarize(xs: number[]): Summary {
  const sorted = [...xs].sort((a, b) => a - b);
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1));
  return { n: xs.length, meanMs: mean, medianMs: sorted[Math.floor(sorted.length / 2)]!, sdMs: sd };
}

/** Welch's difference of means with an approximate 95 % interval (normal quantile: n is large). */
function difference(a: Summary, b: Summary): { diffMs: number; ci95Ms: [number, number]; significant: boolean } {
  const diff = a.meanMs - b.meanMs;
  const se = Math.sqrt(a.sdMs ** 2 / a.n + b.sdMs ** 2 / b.n);
  const lo = diff - 1.96 * se;
  const hi = diff + 1.96 * se;
  return { diffMs: diff, ci95Ms: [lo, hi], significant: lo > 0 || hi < 0 };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '40' }, json: { type: 'boolean', default: false } } });
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 5) throw new Error('--rounds must be an integer of at least 5');
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-audit-'));
  // Limits off: this measures the password path, not the throttle.
  const config = loadConfig(
    {},
    {
      dataDir,
      port: 0,
      logLevel: 'error',
      ops: { enabled: false },
      console: { enabled: false },
      limits: { ipPasscodeRequestsPerMinute: 1_000_000, ipLoginsPerMinute: 1_000_000, freeFailures: 1_000_000 },
    },
    undefined,
  );
  const mailer: Mailer = { send: async () => {}, close: () => {} };
  const app = buildApp({ config, log: createLogger('error', pino.destination(2)), mailer });
  try {
    await app.addUser(USER);
    const { address, tls } = await app.listen();
    const client = await HellwallClient.connect({ host: '127.0.0.1', port: address.port, ca: tls.cert });
    const cases = {
      'passcode.request, existing account, wrong password': () =>
        client.requestPasscode({ email: USER.email, password: 'wrong password 0123456789', mac: MAC }),
      'passcode.request, unknown account': () => client.requestPasscode({ email: 'nobody@example.com', password: 'wrong password 0123456789', mac: MAC }),
      'passcode.auth, existing account, wrong password': () =>
        client.login({ email: USER.email, phone: USER.phone, password: 'wrong password 0123456789', passcode: 'K7M2QX', mac: MAC }),
      'passcode.auth, unknown account': () =>
        client.login({ email: 'nobody@example.com', phone: USER.phone, password: 'wrong password 0123456789', passcode: 'K7M2QX', mac: MAC }),
    } as const;
    type Name = keyof typeof cases;
    const samples = new Map<Name, number[]>(Object.keys(cases).map((k) => [k as Name, []]));
    // Warm-up, then interleave the cases so drift (CPU frequency, other load) hits all alike.
    for (const run of Object.values(cases)) await run();
    for (let i = 0; i < rounds; i++) {
      for (const [name, run] of Object.entries(cases) as Array<[Name, () => Promise<unknown>]>) {
        const t0 = performance.now();
        await run();
        samples.get(name)!.push(performance.now() - t0);
      }
    }
    await client.close();
    const stats = Object.fromEntries([...samples].map(([k, xs]) => [k, summarize(xs)])) as Record<Name, Summary>;
    const comparisons = {
      'passcode.request: existing - unknown': difference(stats['passcode.request, existing account, wrong password'], stats['passcode.request, unknown account']),
      'passcode.auth: existing - unknown': difference(stats['passcode.auth, existing account, wrong password'], stats['passcode.auth, unknown account']),
    };
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ rounds, stats, comparisons }, null, 2)}\n`);
      return;
    }
    const f = (x: number): string => x.toFixed(2);
    console.log(`Timing audit: ${rounds} interleaved rounds over TLS, production scrypt, on this machine\n`);
    console.log('| case | n | mean ms | median ms | sd ms |\n| --- | --- | --- | --- | --- |');
    for (const [name, s] of Object.entries(stats)) console.log(`| ${name} | ${s.n} | ${f(s.meanMs)} | ${f(s.medianMs)} | ${f(s.sdMs)} |`);
    console.log('\n| comparison | mean difference ms | 95 % interval ms | distinguishable? |\n| --- | --- | --- | --- |');
    for (const [name, d] of Object.entries(comparisons)) {
      console.log(`| ${name} | ${f(d.diffMs)} | ${f(d.ci95Ms[0])} … ${f(d.ci95Ms[1])} | ${d.significant ? 'yes: investigate' : 'no'} |`);
    }
  } finally {
    await app.close(1000);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`audit-timing: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
