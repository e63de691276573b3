// The bench's `--profile`: a CPU profile of a bench server over the measured window, taken in the
// server process with the inspector's Profiler (no restart, no file), summarised there by self time
// and grouped by what the time was spent on. Only the summary crosses the IPC channel.
import { Session } from 'node:inspector/promises';

/** The groups a request's server CPU is split into; `other` takes whatever no rule names. */
export const PROFILE_GROUPS = [
  'TLS',
  'framing',
  'JSON',
  'validation',
  'HMAC',
  'cache/store',
  'policy',
  'limits',
  'metrics',
  'logging',
  'dispatch',
  'GC',
  'other',
] as const;
export type ProfileGroup = (typeof PROFILE_GROUPS)[number];

export interface ProfileSummary {
  readonly type: 'profile';
  /** Self time per group over the window, in ms (idle time excluded). */
  readonly groups: Readonly<Record<ProfileGroup, number>>;
  /** The functions with the most self time: group, name, where, ms. */
  readonly top: ReadonlyArray<{ readonly group: ProfileGroup; readonly fn: string; readonly at: string; readonly ms: number }>;
  readonly totalMs: number;
}

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly hitCount?: number;
}

interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples?: readonly number[];
  readonly timeDeltas?: readonly number[];
}

// First match wins, so the specific rules come before the broad ones. `url` is the module's file
// URL ('' for natives and for code made with new Function, like ajv's compiled validators).
const RULES: ReadonlyArray<readonly [ProfileGroup, (fn: string, url: string) => boolean]> = [
  ['GC', (fn) => fn === '(garbage collector)'],
  // Natives have no URL: Hmac's `init`, `update`, `digest`; better-sqlite3's statement `get`/`run`/`all`.
  ['HMAC', (fn, url) => url.includes('internal/crypto/') || url.endsWith('/primitives/tokens.js') || (url === '' && /^(createHmac|Hmac|init|digest|update)$/.test(fn))],
  ['cache/store', (fn, url) => url === '' && /^(get|run|all|iterate|pluck)$/.test(fn)],
  ['validation', (fn, url) => url.includes('/ajv/') || url.endsWith('/protocol/envelope.js') || url.endsWith('/primitives/normalize.js') || /^validate\d*$/.test(fn) || fn === 'test' || fn === 'exec' || fn === 'ucs2length'],
  ['JSON', (fn, url) => (url === '' && /^(parse|stringify|isUtf8|utf8Slice|toString|utf8Write|byteLengthUtf8)$/.test(fn)) || url.endsWith('/codec/response-serializers.js')],
  ['framing', (fn, url) =>
    url.includes('/codec/') || url.endsWith('/server/connection.js') || url.endsWith('/server/buffer-budget.js') || (url === 'node:buffer' && /^(write|concat|allocUnsafe|subarray|slice|byteLength)$/.test(fn)) || (url === 'node:internal/buffer' && fn === 'createUnsafeBuffer')],
  ['TLS', (fn, url) => /node:(_tls_wrap|net|stream|_stream|internal\/stream|internal\/streams|internal\/net|_tls)/.test(url) || /^(writeBuffer|writev|writeUtf8String|writeLatin1String|readStart|readStop|onStreamRead|encOut|clearIn|clearOut)$/.test(fn)],
  ['cache/store', (_fn, url) => url.endsWith('/services/session-cache.js') || url.includes('/store/') || url.includes('better-sqlite3') || url.includes('/pg/')],
  ['policy', (_fn, url) => url.endsWith('/services/policy.js')],
  ['limits', (_fn, url) => url.endsWith('/services/throttle.js') || url.endsWith('/primitives/limiter.js')],
  ['metrics', (_fn, url) => url.endsWith('/ops/metrics.js') || url.includes('prom-client')],
  ['logging', (_fn, url) => url.includes('/pino') || url.endsWith('/src/log.js') || url.endsWith('/dist/log.js')],
  ['dispatch', (_fn, url) => url.endsWith('/server/dispatcher.js') || url.includes('/handlers/') || url.includes('/services/') || url.endsWith('/tls-server.js')],
];

export function groupOf(fn: string, url: string): ProfileGroup {
  for (const [group, match] of RULES) if (match(fn, url)) return group;
  return 'other';
}

/** Self time per function and per group; `(idle)` is left out, `(program)` (the VM's own work) counts as other. */
export function summarize(profile: Profile, topN = 20): ProfileSummary {
  // Self time from the samples and their deltas (µs): exact even when the sampling interval drifted.
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const selfUs = new Float64Array(profile.nodes.length);
  const index = new Map<number, number>();
  profile.nodes.forEach((node, i) => index.set(node.id, i));
  for (let i = 0; i < samples.length; i++) {
    const at = index.get(samples[i]!);
    // A sample's time is the gap to the next one.
    if (at !== undefined) selfUs[at]! += deltas[i + 1] ?? 0;
  }
  const groups = Object.fromEntries(PROFILE_GROUPS.map((g) => [g, 0])) as Record<ProfileGroup, number>;
  const byFn = new Map<string, { group: ProfileGroup; fn: string; at: string; ms: number }>();
  let totalMs = 0;
  profile.nodes.forEach((node, i) => {
    const { functionName, url, lineNumber } = node.callFrame;
    const ms = selfUs[i]! / 1000;
    if (ms === 0 || functionName === '(idle)') return;
    const fn = functionName || '(anonymous)';
    const group = groupOf(fn, url);
    groups[group] += ms;
    totalMs += ms;
    const at = url === '' ? '' : `${url.replace(/^.*\/(dist|node_modules)\//, '').replace(/^file:\/\//, '')}:${lineNumber + 1}`;
    const key = `${fn}@${at}`;
    const entry = byFn.get(key) ?? { group, fn, at, ms: 0 };
    entry.ms += ms;
    byFn.set(key, entry);
  });
  const top = [...byFn.values()].sort((a, b) => b.ms - a.ms).slice(0, topN);
  return { type: 'profile', groups, top, totalMs };
}

/** Starts the Profiler in this process; the returned function stops it and answers the summary. */
export async function startProfile(intervalUs = 100): Promise<() => Promise<ProfileSummary>> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: intervalUs });
  await session.post('Profiler.start');
  return async () => {
    const { profile } = (await session.post('Profiler.stop')) as { profile: Profile };
    await session.post('Profiler.disable');
    session.disconnect();
    return summarize(profile);
  };
}
