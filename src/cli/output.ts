// How every command prints: tables for people (times as ISO-8601), one JSON line for scripts (times
// as the numbers the wire carries), and never a raw control character from user-supplied text.

// C0 and C1 controls, DEL, and the bidirectional marks and overrides that can reorder what a
// terminal shows: an email or device name may carry any of them (clients send what they like).
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

const escape = (c: string): string => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

/** `text` with every control or bidi character shown as `\uXXXX`, so it cannot rewrite the terminal. */
export function printable(text: string): string {
  return text.replace(UNSAFE, escape);
}

/**
 * One line of JSON. JSON.stringify already escapes C0 controls; DEL, C1 and the bidi characters
 * are escaped too (still valid JSON, the same string once parsed).
 */
export function json(value: unknown): string {
  return JSON.stringify(value).replace(UNSAFE, escape);
}

/** A time (ms since the epoch) as tables show it; `-` for none. */
export function isoTime(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? '-' : new Date(ms).toISOString();
}

/** A plain text table for people; scripts use --json. Every cell is made printable; empty is `-`. */
export function table(head: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number | boolean | null | undefined>>): string {
  const cells = [head.map(String), ...rows.map((r) => r.map((c) => (c === null || c === undefined || c === '' ? '-' : printable(String(c)))))];
  const widths = head.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  return cells.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/** `key  value` lines, keys aligned (one record for people). */
export function fields(record: Readonly<Record<string, unknown>>): string {
  const width = Math.max(...Object.keys(record).map((k) => k.length));
  return Object.entries(record)
    .map(([k, v]) => `${k.padEnd(width)}  ${v === null || v === undefined ? '-' : printable(String(v))}`)
    .join('\n');
}

/**
 * Whether to colour output: only on a terminal, and never when NO_COLOR is set to anything
 * non-empty (https://no-color.org).
 */
export function useColor(env: NodeJS.ProcessEnv, sink: { readonly isTTY?: boolean }): boolean {
  return Boolean(sink.isTTY) && !env.NO_COLOR && env.TERM !== 'dumb';
}
