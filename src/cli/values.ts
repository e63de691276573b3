import { UsageError } from './errors.js';

// Option values the CLI parses itself: a mistake here is a usage error (exit 2), before anything
// is opened.

const AGE = /^(\d{1,9})([smhdw])$/;
const AGE_MS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const ISO_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,3})?)?(Z|[+-]\d{2}:?\d{2})?)?$/i;

/**
 * A point in time for --since/--until: an ISO-8601 date (`2025-03-01`, midnight UTC) or date and
 * time (`2025-03-01T14:30`, UTC unless it names a zone, as the tables show times), or an age
 * (`90s`, `30m`, `12h`, `7d`, `2w`: now minus that).
 */
export function parseTime(text: string, option: string, now: number): number {
  const age = AGE.exec(text);
  if (age) return now - Number(age[1]) * AGE_MS[age[2]!]!;
  const m = ISO_TIME.exec(text);
  if (m) {
    const [, y, mo, d, h = '00', mi = '00', sec = '00', frac = '', zone = 'Z'] = m;
    const day = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
    // Date.parse would roll 2025-02-30 over into March; a date that does not exist is refused.
    const real = day.getUTCFullYear() === Number(y) && day.getUTCMonth() === Number(mo) - 1 && day.getUTCDate() === Number(d);
    const offset = zone.toUpperCase() === 'Z' ? 'Z' : `${zone.slice(0, 3)}:${zone.slice(-2)}`;
    const ms = Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${sec}${frac}${offset}`);
    if (real && Number.isFinite(ms)) return ms;
  }
  throw new UsageError(`${option} must be an ISO-8601 date or time (2025-03-01, 2025-03-01T14:30:00Z) or an age such as 30m, 12h, 7d; not ${JSON.stringify(text)}`);
}

export function wholeNumber(text: string, option: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n)) throw new UsageError(`${option} must be a whole number, not ${JSON.stringify(text)}`);
  return n;
}
