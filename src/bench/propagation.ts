import { performance } from 'node:perf_hooks';

/** How long another node went on answering `authorized` after a revocation was acknowledged. */
export interface Propagation {
  /**
   * Milliseconds from the acknowledgement reaching the client to the other node's first
   * `unauthorized` answer (0 when it refused before the acknowledgement arrived). An upper bound:
   * it includes the round trip of that last check.
   */
  readonly ms: number;
  /** `authorized` answers to checks sent to the other node after the acknowledgement. */
  readonly staleAnswers: number;
}

/**
 * Runs `check` (a token check on the observing node) back to back while `revoke` (on another node)
 * runs, until a check answers `unauthorized`. `revoke` resolves once the revoking node has
 * acknowledged. Throws on any other answer than authorized/unauthorized, when `revoke` throws, or
 * when the observer still authorizes `timeoutMs` after the acknowledgement.
 */
export async function measurePropagation(
  check: () => Promise<{ status: string }>,
  revoke: () => Promise<void>,
  timeoutMs = 2000,
): Promise<Propagation> {
  let acked: number | undefined;
  let staleAnswers = 0;
  let abandoned = false;
  const poll = (async (): Promise<number> => {
    while (!abandoned) {
      const sent = performance.now();
      const res = await check();
      const at = performance.now();
      if (res.status === 'unauthorized') return at;
      if (res.status !== 'authorized') throw new Error(`the observing node answered ${JSON.stringify(res)}`);
      if (acked !== undefined && sent >= acked) staleAnswers++;
      if (acked !== undefined && at - acked > timeoutMs) throw new Error(`still authorized ${timeoutMs} ms after the revocation was acknowledged`);
    }
    return NaN;
  })();
  try {
    await revoke();
  } catch (err) {
    abandoned = true;
    await poll.catch(() => undefined);
    throw err;
  }
  acked = performance.now();
  const refusedAt = await poll;
  return { ms: Math.max(0, refusedAt - acked), staleAnswers };
}
