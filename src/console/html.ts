/**
 * HTML made safe by construction: `html` escapes every interpolated value unless it is already
 * `Html` (built by `html` itself, or `raw` for markup written here), so text that came from a user
 * or the database (an email holding `<script>`) can only ever show as text.
 */

const ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Markup known to be safe: only `html` and `raw` make one. */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

/** What may be interpolated: text (escaped), markup, numbers, nothing, or lists of those. */
export type HtmlValue = string | number | boolean | null | undefined | Html | readonly HtmlValue[];

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

function render(value: HtmlValue): string {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(String(value));
}

export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]!) + strings[i + 1]!;
  return new Html(out);
}

/** Markup written in this module's callers, never built from input. */
export function raw(markup: string): Html {
  return new Html(markup);
}

/** A time as the page shows it (UTC, like the CLI), in a <time> element the script may localise. */
export function time(ms: number | null): Html {
  if (ms === null) return html`-`;
  const iso = new Date(ms).toISOString();
  return html`<time datetime="${iso}">${iso.slice(0, 19).replace('T', ' ')} UTC</time>`;
}
