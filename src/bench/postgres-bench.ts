// The multi-node part of `npm run bench`: token checks through two Hellwall nodes on one PostgreSQL
// next to one node on SQLite, measured back to back in the same run, and how long a logout
// acknowledged by one node takes to be refused by the other (revocation propagation).
import { COMMAND_CODES } from '../protocol/messages.gen.js';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { HellwallClient } from '../client/client.js';
import type { BenchSession, ServerMode, ServerReady } from './bench-server.js';
import type { LoadResult, LoadSpec } from './load-client.js';
import { startPostgres, type PgCluster } from './postgres-cluster.js';
import { measurePropagation } from './propagation.js';

/** What the orchestrator (bench.ts) lends this part: its server children and its load runner. */
export interface PostgresBenchDeps<S extends BenchServer> {
  /** The one-node SQLite service the comparison is made against (bench.ts's `hellwall`). */
  readonly sqlite: S;
  startServer(mode: ServerMode, dataDir: string, storeUrl?: string): Promise<S>;
  /** One load-client run against `servers` (their CPU summed). */
  runClient(spec: LoadSpec, servers: readonly S[]): Promise<LoadResult & { serverCpu: number }>;
  /** Where the nodes keep their shared data directory (key ring, certificate). */
  readonly dataDir: string;
  /** Registers something to stop when the bench ends, whatever happens. */
  onCleanup(fn: () => Promise<void>): void;
}

/** The part of bench.ts's ServerChild this needs. */
export interface BenchServer {
  readonly ready: ServerReady;
  sessions(count: number): Promise<readonly BenchSession[]>;
}

export interface PropagationResult {
  /** Logouts measured. */
  readonly n: number;
  /** Milliseconds from node A's acknowledgement reaching the client to node B's first refusal (see Propagation). */
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Checks sent to B after an acknowledgement that B still answered `authorized` (the bound is none). */
  readonly staleAnswers: number;
}

type Run = LoadResult & { serverCpu: number };

export type PostgresResult =
  | {
      readonly available: true;
      readonly conns: number;
      readonly inflight: number;
      /** One node on SQLite and two nodes on PostgreSQL, alternately, one pair per round. */
      readonly rounds: ReadonlyArray<{ readonly sqlite: Run; readonly postgres: Run }>;
      /** Mean req/s of the PostgreSQL runs over mean req/s of the SQLite runs. */
      readonly ratio: number;
      readonly propagation: PropagationResult;
    }
  | { readonly available: false; readonly reason: string };

export const PG_CONNS = 16;
export const PG_INFLIGHT = 32;
/** The ratio issue 11 asks for: two nodes on PostgreSQL within 0.9× of one node on SQLite. */
export const PG_TARGET_RATIO = 0.9;

export async function runPostgresBench<S extends BenchServer>(
  deps: PostgresBenchDeps<S>,
  opts: { warmupMs: number; durationMs: number; rounds: number; propagationN: number },
): Promise<PostgresResult> {
  let cluster: PgCluster | undefined;
  try {
    cluster = await startPostgres({ name: 'bench' });
  } catch (err) {
    return { available: false, reason: `PostgreSQL did not start: ${(err as Error).message.split('\n')[0]}` };
  }
  if (!cluster) return { available: false, reason: 'no PostgreSQL binaries: no initdb under /usr/lib/postgresql/*/bin' };
  const pg = cluster;
  deps.onCleanup(() => pg.destroy());

  const dir = path.join(deps.dataDir, 'postgres-nodes');
  mkdirSync(dir, { mode: 0o700 });
  // A first: it migrates the database, makes the key ring and the certificate B then loads.
  const a = await deps.startServer('hellwall-pg', dir, pg.url);
  const b = await deps.startServer('hellwall-pg-peer', dir, pg.url);
  const { token, mac, certFile } = a.ready;
  const ca = readFileSync(certFile);
  // Node A checked the token once at start-up, as the SQLite node did: B does too, so both nodes
  // start the load with the session in their cache (a cold cache is a start-up cost, not a rate).
  const onB = await HellwallClient.connect({ host: '127.0.0.1', port: b.ready.port, ca });
  const first = await onB.check({ token: token ?? '', mac: mac ?? '', request: 'bench.read', data: {} }).finally(() => onB.close());
  if (first.status !== 'authorized') throw new Error(`node B does not authorize node A's token: ${JSON.stringify(first)}`);

  const base = { conns: PG_CONNS, inflight: PG_INFLIGHT, warmupMs: opts.warmupMs, durationMs: opts.durationMs, expect: 'authorized' };
  const rounds: Array<{ sqlite: Run; postgres: Run }> = [];
  for (let i = 0; i < opts.rounds; i++) {
    const s = deps.sqlite.ready;
    const sqlite = await deps.runClient(
      { ...base, port: s.port, caFile: s.certFile, message: { code: COMMAND_CODES['token.check'], token: s.token, mac: s.mac, request: 'bench.read', data: {} } },
      [deps.sqlite],
    );
    // Half the connections to each node, with the one token: the session lives in the database.
    const postgres = await deps.runClient(
      { ...base, port: a.ready.port, ports: [a.ready.port, b.ready.port], caFile: certFile, message: { code: COMMAND_CODES['token.check'], token, mac, request: 'bench.read', data: {} } },
      [a, b],
    );
    rounds.push({ sqlite, postgres });
  }
  const mean = (xs: readonly number[]): number => xs.reduce((x, y) => x + y, 0) / xs.length;
  const ratio = mean(rounds.map((r) => r.postgres.rps)) / mean(rounds.map((r) => r.sqlite.rps));

  const sessions = await a.sessions(opts.propagationN);
  const propagation = await propagationFigures(a.ready, b.ready, ca, sessions);
  return { available: true, conns: PG_CONNS, inflight: PG_INFLIGHT, rounds, ratio, propagation };
}

/**
 * For each session in turn: a check on B (so B has it cached, as a live session would be), then a
 * logout on A while B is checked back to back (propagation.ts). One at a time, so nothing else
 * runs on either node meanwhile.
 */
async function propagationFigures(a: ServerReady, b: ServerReady, ca: Buffer, sessions: readonly BenchSession[]): Promise<PropagationResult> {
  const onA = await HellwallClient.connect({ host: '127.0.0.1', port: a.port, ca });
  const onB = await HellwallClient.connect({ host: '127.0.0.1', port: b.port, ca });
  const figures: number[] = [];
  let staleAnswers = 0;
  try {
    for (const s of sessions) {
      const check = (): Promise<{ status: string }> => onB.check({ token: s.token, mac: s.mac, request: 'bench.read' });
      const warm = await check();
      if (warm.status !== 'authorized') throw new Error(`propagation: a fresh session is not authorized on node B: ${JSON.stringify(warm)}`);
      const p = await measurePropagation(
        check,
        async () => {
          const out = await onA.logout({ token: s.token, mac: s.mac });
          if (out.status !== 'ok') throw new Error(`propagation: logout on node A answered ${JSON.stringify(out)}`);
        },
        5000,
      );
      figures.push(p.ms);
      staleAnswers += p.staleAnswers;
    }
  } finally {
    await Promise.all([onA.close(), onB.close()]);
  }
  const sorted = figures.sort((x, y) => x - y);
  const pct = (q: number): number => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] ?? NaN;
  return { n: sorted.length, p50Ms: pct(0.5), p99Ms: pct(0.99), maxMs: sorted.at(-1) ?? NaN, staleAnswers };
}

/** The report's lines for this part. */
export function postgresTable(r: PostgresResult): string {
  if (!r.available) return `PostgreSQL: not available (${r.reason}); the two-node figures were skipped`;
  const ms = (v: number): string => (v < 10 ? v.toFixed(3) : v.toFixed(1)).padStart(7);
  const run = (x: Run): string =>
    `${Math.round(x.rps).toString().padStart(11)} ${ms(x.p50Ms)} ${ms(x.p99Ms)} ${`${Math.round(x.serverCpu * 100)}/${Math.round(x.clientCpu * 100)}`.padStart(8)}`;
  const p = r.propagation;
  return [
    `PostgreSQL: token checks at ${r.conns} × ${r.inflight} through two nodes on one database (${r.conns / 2} connections each) ` +
      'against one node on SQLite, back to back; cpu% is the nodes\' sum / the client\'s',
    'round | sqlite 1 node req/s     p50     p99 cpu%s/c | postgres 2 nodes req/s     p50     p99 cpu%s/c | ratio | errors',
    ...r.rounds.map(
      (x, i) =>
        `${String(i + 1).padStart(5)} | ${run(x.sqlite).padStart(41)} | ${run(x.postgres).padStart(44)} | ${(x.postgres.rps / x.sqlite.rps).toFixed(2).padStart(5)} |` +
        ` ${String(x.sqlite.errors + x.postgres.errors).padStart(6)}`,
    ),
    `ratio (mean postgres ÷ mean sqlite): ${r.ratio.toFixed(2)} (target ≥ ${PG_TARGET_RATIO.toFixed(2)})`,
    `revocation propagation, ${p.n} logouts on node A each observed on node B: p50 ${p.p50Ms.toFixed(2)} ms, p99 ${p.p99Ms.toFixed(2)} ms, ` +
      `max ${p.maxMs.toFixed(2)} ms; ${p.staleAnswers} authorized answer(s) to checks sent after an acknowledgement`,
  ].join('\n');
}

/** Wrong answers in this part's load runs. */
export function postgresErrors(r: PostgresResult): number {
  return r.available ? r.rounds.reduce((n, x) => n + x.sqlite.errors + x.postgres.errors, 0) : 0;
}
