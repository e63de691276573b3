import { statSync } from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { listKeys } from '../keys/key-ring.js';
import type { Actor } from '../services/admin-service.js';
import { DATABASE_FILE } from '../store/open.js';
import type { AuditRecord } from '../store/store.js';
import { sendPage, type ConsoleContext } from './context.js';
import { html, time, type Html } from './html.js';
import { page } from './layout.js';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
// The chart reads at most this many login rows (pages of 1,000): a day busier than that is shown as
// "at least", and the overview stays quick.
const SCAN_PAGES = 20;

export interface LoginBuckets {
  /** Per hour of the last day, oldest first: logins that succeeded, failed, were refused by a limit. */
  readonly hours: ReadonlyArray<{ readonly success: number; readonly failure: number; readonly denied: number }>;
  /** Whether the scan stopped at its cap (the counts are lower bounds). */
  readonly capped: boolean;
}

/** Login rows of the last day through the AdminService (one query per page), counted by hour. */
export async function loginBuckets(ctx: ConsoleContext, actor: Actor, now: number): Promise<LoginBuckets> {
  const hours = Array.from({ length: 24 }, () => ({ success: 0, failure: 0, denied: 0 }));
  const since = now - DAY_MS;
  let beforeId: number | undefined;
  let capped = false;
  for (let pageNo = 0; ; pageNo++) {
    if (pageNo === SCAN_PAGES) {
      capped = true;
      break;
    }
    const rows: AuditRecord[] = await ctx.deps.admin.queryAudit(actor, { action: 'login', since, until: now + 1, limit: 1000, ...(beforeId !== undefined && { beforeId }) });
    for (const r of rows) {
      const slot = 23 - Math.min(23, Math.floor((now - r.at) / HOUR_MS));
      hours[slot]![r.outcome]++;
    }
    if (rows.length < 1000) break;
    beforeId = rows.at(-1)!.id;
  }
  return { hours, capped };
}

/** Two bars an hour (succeeded; failed or refused), drawn here: no chart library, no script. */
export function loginChart(b: LoginBuckets): Html {
  const W = 24 * 20;
  const H = 120;
  const max = Math.max(1, ...b.hours.map((h) => Math.max(h.success, h.failure + h.denied)));
  const y = (n: number): number => Math.round((n / max) * (H - 20));
  const bars = b.hours.map((h, i) => {
    const x = i * 20 + 2;
    const bad = h.failure + h.denied;
    return html`<rect class="bar-ok" x="${x}" y="${H - y(h.success)}" width="8" height="${y(h.success)}"></rect><rect class="bar-bad" x="${x + 8}" y="${H - y(bad)}" width="8" height="${y(bad)}"></rect>`;
  });
  const ok = b.hours.reduce((n, h) => n + h.success, 0);
  const bad = b.hours.reduce((n, h) => n + h.failure + h.denied, 0);
  return html`<figure class="chart">
<svg viewBox="0 0 ${W} ${H + 16}" role="img" aria-labelledby="chart-title chart-desc" width="100%" height="150">
<title id="chart-title">Logins per hour, last 24 hours</title>
<desc id="chart-desc">${ok} succeeded and ${bad} failed or refused over the last 24 hours; the tallest hour has ${max}.</desc>
<line class="axis" x1="0" y1="${H}" x2="${W}" y2="${H}"></line>
${bars}
<text class="tick" x="0" y="${H + 14}">24 h ago</text><text class="tick" x="${W}" y="${H + 14}" text-anchor="end">now</text>
</svg>
<figcaption><span class="key-ok">■</span> succeeded <span class="key-bad">■</span> failed or refused${b.capped ? ' (at least: the busiest rows were not all read)' : ''}</figcaption>
</figure>`;
}

export function registerOverviewPage(app: FastifyInstance, ctx: ConsoleContext): void {
  const { deps } = ctx;
  app.get('/overview', async (req, reply) => {
    const a = await ctx.admin(req, reply, 'admin.stats');
    if (!a) return reply;
    const now = deps.clock();
    // The page view is audited once (admin.stats); the reads that fill the rest are part of it.
    const quiet: Actor = { ...a.actor, auditReads: false };
    const stats = await deps.admin.stats(a.actor);
    const users = await deps.admin.listUsers(quiet);
    const buckets = await loginBuckets(ctx, quiet, now);
    const lastHour = buckets.hours[23]!;
    const day = buckets.hours.reduce((t, h) => ({ success: t.success + h.success, failure: t.failure + h.failure, denied: t.denied + h.denied }), { success: 0, failure: 0, denied: 0 });
    const throttledDay = (await deps.admin.queryAudit(quiet, { action: 'passcode.request', outcome: 'denied', since: now - DAY_MS, limit: 1000 })).length + day.denied;
    const keys = listKeys(deps.config.dataDir);
    const byKey = await deps.store.countSessionsByKey(now);
    const schema = await deps.store.schemaVersion();
    const readiness = await Promise.all(
      deps.readiness.map(async (c) => {
        try {
          return { name: c.name, reason: await c.check() };
        } catch (err) {
          return { name: c.name, reason: (err as Error).message };
        }
      }),
    );
    const ready = readiness.every((r) => r.reason === null);
    const content = html`<section class="cards" aria-label="Counts">
<div class="card"><h2>Active sessions</h2><p class="big">${stats.activeSessions}</p><p>${stats.activeUsers} operator(s) logged in</p></div>
<div class="card"><h2>Users</h2><p class="big">${users.length}</p><p>${users.filter((u) => u.disabled).length} disabled, ${users.filter((u) => u.role === 'admin').length} admin(s)</p></div>
<div class="card"><h2>Logins, last hour</h2><p class="big">${lastHour.success}</p><p>${lastHour.failure} failed, ${lastHour.denied} refused by limits</p></div>
<div class="card"><h2>Logins, last day</h2><p class="big">${day.success}</p><p>${day.failure} failed, ${day.denied} refused by limits</p></div>
<div class="card"><h2>Rate limits and lockouts</h2><p class="big">${throttledDay}</p><p>attempts refused in the last day</p></div>
<div class="card"><h2>Mail queue</h2><p class="big">${deps.mail.pending}</p><p>${deps.mail.sent} sent, ${deps.mail.failed} failed since start</p></div>
<div class="card"><h2>Readiness</h2><p class="big ${ready ? 'good' : 'bad'}">${ready ? 'ready' : 'not ready'}</p><p>${readiness.map((r) => html`${r.name}: ${r.reason ?? 'ok'}. `)}</p></div>
<div class="card"><h2>Pending passcodes</h2><p class="big">${stats.pendingPasscodes}</p><p>${stats.expiredSessions} expired session(s) to clean up</p></div>
</section>
<section aria-labelledby="activity"><h2 id="activity">Logins, last 24 hours</h2>${loginChart(buckets)}</section>
<section aria-labelledby="keyring"><h2 id="keyring">Key ring</h2>
<table><thead><tr><th scope="col">Key</th><th scope="col">Status</th><th scope="col">Created</th><th scope="col">Sessions</th></tr></thead>
<tbody>${keys.map((k) => html`<tr><td>${k.id}</td><td>${k.status}</td><td>${time(k.createdAt)}</td><td>${byKey.get(k.id) ?? 0}</td></tr>`)}</tbody></table>
</section>
<section aria-labelledby="database"><h2 id="database">Database</h2>
<dl class="facts"><dt>Backend</dt><dd>${deps.store.backend}</dd><dt>Schema version</dt><dd>${schema}</dd><dt>Size</dt><dd>${databaseSize(deps.store.backend, deps.config.dataDir)}</dd></dl>
</section>`;
    return sendPage(reply, page('overview', 'Overview', a.viewer, content));
  });
}

/** The SQLite file and its write-ahead log; PostgreSQL's size is its server's to tell. */
export function databaseSize(backend: string, dataDir: string): string {
  if (backend !== 'sqlite') return 'see the database server';
  let bytes = 0;
  for (const suffix of ['', '-wal']) {
    try {
      bytes += statSync(path.join(dataDir, DATABASE_FILE + suffix)).size;
    } catch {
      // No write-ahead log right now.
    }
  }
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MiB` : `${Math.ceil(bytes / 1024)} KiB`;
}
