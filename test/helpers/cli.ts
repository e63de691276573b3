import { Readable } from 'node:stream';
import { main } from '../../src/cli/main.js';
import type { Protocol } from '../../src/protocol/registry.js';
import { sharedProtocol } from './shared-protocol.js';

// The CLI in-process: main() with buffers for stdout and stderr, as `hellwall` would print them.
// Process-level behaviour (signals, a TTY, the exit itself) stays with processes.ts `cli()`.

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `hellwall <args>` in this process; `stdin` is what a pipe would give it (default: nothing). */
export async function runCli(args: readonly string[], env: NodeJS.ProcessEnv, opts: { stdin?: string; protocol?: Protocol } = {}): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, env, {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    stdin: Readable.from(opts.stdin === undefined ? [] : [Buffer.from(opts.stdin)]),
    protocol: opts.protocol ?? sharedProtocol(),
  });
  return { code, stdout, stderr };
}

/** One row of `hellwall audit --json` (times in ms, as on the wire). */
export interface AuditRow {
  id: number;
  at: number;
  action: string;
  outcome: string;
  userId: number | null;
  email: string | null;
  actor: string | null;
  ip: string | null;
  mac: string | null;
  sessionId: number | null;
  detail: Record<string, unknown> | null;
}

/** `hellwall audit --json` with `args`, in-process; throws unless it exits 0. */
export async function auditJson(e: NodeJS.ProcessEnv, ...args: string[]): Promise<AuditRow[]> {
  const r = await runCli(['audit', '--json', ...args], e);
  if (r.code !== 0) throw new Error(`hellwall audit ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as AuditRow[];
}
