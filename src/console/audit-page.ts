import type { FastifyInstance } from 'fastify';
import { AUDIT_OUTCOMES, type AuditOutcome, type AuditQuery, type AuditRecord } from '../store/store.js';
import { noticeFor, sendPage, type ConsoleContext } from './context.js';
import { html, time, type Html } from './html.js';
import { page, type Notice } from './layout.js';

const PAGE_ROWS = 50;
// An export reads at most this many rows (pages of 1,000); narrower filters get the rest.
const EXPORT_MAX = 10_000;

interface AuditFilter {
  actor?: string;
  email?: string;
  action?: string;
  outcome?: string;
  since?: string;
  until?: string;
  before?: string;
}

const FILTER_QUERY = {
  type: 'object',
  properties: {
    actor: { type: 'string', maxLength: 300 },
    email: { type: 'string', maxLength: 254 },
    action: { type: 'string', maxLength: 100 },
    outcome: { type: 'string', maxLength: 10 },
    since: { type: 'string', maxLength: 30 },
    until: { type: 'string', maxLength: 30 },
    before: { type: 'string', pattern: '^[0-9]{0,15}$' },
  },
} as const;

// What <input type="datetime-local"> sends: a time without a zone, read as UTC like every time here.
const LOCAL_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/;

/** The filter as an AuditQuery (checked again by the AdminService); a malformed time is a refusal. */
export function toQuery(f: AuditFilter, limit: number): { query: Partial<AuditQuery>; problem?: string } {
  const when = (text: string | undefined, name: string): number | undefined | string => {
    if (!text) return undefined;
    if (!LOCAL_TIME.test(text)) return `${name} must be a date and time (YYYY-MM-DDTHH:MM, UTC)`;
    const ms = Date.parse(`${text}Z`);
    return Number.isFinite(ms) ? ms : `${name} is not a real date`;
  };
  const since = when(f.since, 'From');
  const until = when(f.until, 'Until');
  const problem = [since, until].find((v): v is string => typeof v === 'string');
  const text = (v: string | undefined): string | undefined => (v?.trim() ? v.trim() : undefined);
  const outcome = text(f.outcome);
  const query: Partial<AuditQuery> = {
    ...(text(f.actor) !== undefined && { actor: text(f.actor)! }),
    ...(text(f.email) !== undefined && { email: text(f.email)! }),
    ...(text(f.action) !== undefined && { action: text(f.action)! }),
    ...(outcome !== undefined && { outcome: outcome as AuditOutcome }),
    ...(typeof since === 'number' && { since }),
    ...(typeof until === 'number' && { until }),
    ...(f.before ? { beforeId: Number(f.before) } : {}),
    limit,
  };
  return problem ? { query, problem } : { query };
}

/** The filter's fields as a query string (for the next page and the export links). */
function linkWith(f: AuditFilter, more: Record<string, string>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...f, ...more })) if (v) p.set(k, v);
  return p.toString();
}

/**
 * One CSV field (RFC 4180 quoting). A field a spreadsheet would run as a formula (starting with =,
 * +, -, @, tab or CR) gets a leading apostrophe: audit rows hold what clients sent.
 */
export function csvField(value: string | number | null): string {
  if (value === null) return '';
  let text = String(value);
  if (typeof value === 'string' && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) || text !== String(value) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function csvRow(r: AuditRecord): string {
  return [r.id, new Date(r.at).toISOString(), r.action, r.outcome, r.email, r.actor, r.ip, r.mac, r.sessionId, r.detail === null ? null : JSON.stringify(r.detail)]
    .map(csvField)
    .join(',');
}

export const CSV_HEADER = 'id,time,action,outcome,email,actor,ip,mac,session,detail';

/** The audit trail: filters, pages of 50 (newest first), and the same rows as CSV. */
export function registerAuditPage(app: FastifyInstance, ctx: ConsoleContext): void {
  const { deps } = ctx;

  app.get<{ Querystring: AuditFilter }>('/audit', { schema: { querystring: FILTER_QUERY } }, async (req, reply) => {
    const a = await ctx.admin(req, reply, 'admin.audit.query');
    if (!a) return reply;
    const f = req.query;
    const { query, problem } = toQuery(f, PAGE_ROWS);
    let rows: AuditRecord[] = [];
    let notice: Notice | undefined = problem ? { kind: 'error', text: problem } : undefined;
    if (!problem) {
      try {
        rows = await deps.admin.queryAudit(a.actor, query);
      } catch (err) {
        notice = noticeFor(err);
      }
    }
    const next = rows.length === PAGE_ROWS ? linkWith(f, { before: String(rows.at(-1)!.id) }) : null;
    return sendPage(reply, page('audit', 'Audit trail', a.viewer, auditContent(f, rows, next), notice));
  });

  app.get<{ Querystring: AuditFilter }>('/audit.csv', { schema: { querystring: FILTER_QUERY } }, async (req, reply) => {
    const a = await ctx.admin(req, reply, 'admin.audit.query');
    if (!a) return reply;
    const { query, problem } = toQuery(req.query, 1000);
    if (problem) return reply.code(400).type('text/plain; charset=utf-8').send(`${problem}\n`);
    const lines = [CSV_HEADER];
    // The first page is the audited query (the filters in its detail); the rest continue it.
    let actor = a.actor;
    let beforeId = query.beforeId;
    try {
      while (lines.length <= EXPORT_MAX) {
        const rows = await deps.admin.queryAudit(actor, { ...query, ...(beforeId !== undefined && { beforeId }) });
        for (const r of rows) lines.push(csvRow(r));
        if (rows.length < 1000) break;
        beforeId = rows.at(-1)!.id;
        actor = { ...actor, auditReads: false };
      }
    } catch (err) {
      return reply.code(400).type('text/plain; charset=utf-8').send(`${noticeFor(err).text}\n`);
    }
    return reply
      .type('text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="hellwall-audit-${new Date(deps.clock()).toISOString().slice(0, 10)}.csv"`)
      .send(lines.slice(0, EXPORT_MAX + 1).join('\r\n') + '\r\n');
  });
}

function auditContent(f: AuditFilter, rows: AuditRecord[], next: string | null): Html {
  const outcomes = ['', ...AUDIT_OUTCOMES].map((o) => html`<option value="${o}"${o === (f.outcome ?? '') ? html` selected` : ''}>${o || 'any'}</option>`);
  return html`<form method="get" action="/audit" class="filters grid" role="search">
<label for="a-actor">Actor</label><input id="a-actor" name="actor" value="${f.actor ?? ''}" maxlength="300" placeholder="console:admin@example.com">
<label for="a-email">Operator</label><input id="a-email" name="email" value="${f.email ?? ''}" maxlength="254">
<label for="a-action">Action</label><input id="a-action" name="action" value="${f.action ?? ''}" maxlength="100" placeholder="login, admin.*">
<label for="a-outcome">Outcome</label><select id="a-outcome" name="outcome">${outcomes}</select>
<label for="a-since">From (UTC)</label><input id="a-since" name="since" type="datetime-local" value="${f.since ?? ''}">
<label for="a-until">Until (UTC)</label><input id="a-until" name="until" type="datetime-local" value="${f.until ?? ''}">
<button type="submit">Filter</button>
</form>
<p><a href="/audit.csv?${linkWith({ ...f, before: '' }, {})}" download>Export these rows as CSV</a></p>
<table class="audit"><thead><tr><th scope="col">Id</th><th scope="col">Time</th><th scope="col">Action</th><th scope="col">Outcome</th><th scope="col">Operator</th><th scope="col">Actor</th><th scope="col">Address</th><th scope="col">Detail</th></tr></thead>
<tbody>${rows.map(
    (r) => html`<tr><td>${r.id}</td><td>${time(r.at)}</td><td>${r.action}</td><td class="outcome-${r.outcome}">${r.outcome}</td><td>${r.email ?? '-'}</td><td>${r.actor ?? '-'}</td><td>${r.ip ?? '-'}</td><td class="detail">${r.detail === null ? '' : JSON.stringify(r.detail)}</td></tr>`,
  )}</tbody></table>
${rows.length === 0 ? html`<p>No rows match.</p>` : ''}
<nav aria-label="Pages" class="pager">${f.before ? html`<a href="/audit?${linkWith({ ...f, before: '' }, {})}">Newest</a>` : ''} ${next ? html`<a href="/audit?${next}" rel="next">Older</a>` : ''}</nav>`;
}
