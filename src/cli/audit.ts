import { auditView } from '../services/views.js';
import { checkAuditQuery } from '../services/admin-service.js';
import type { AuditOutcome, AuditQuery } from '../store/store.js';
import { flag, JSON_OPTION, text, type Command, type OptionDefs } from './command.js';
import { withAdmin } from './local.js';
import { parseTime, wholeNumber } from './values.js';
import { auditText } from './views.js';

/**
 * `hellwall audit`: the audit trail, newest first. What the CLI parses itself (times, numbers) is
 * a usage error (exit 2); what the admin service refuses (an unknown outcome, a malformed action,
 * since not before until, a limit out of range) exits 1 with its message, as on the wire.
 */
/** The audit filters, the same for the local command and `client admin audit`. */
export const AUDIT_FILTERS: OptionDefs = {
    email: { type: 'string', value: 'E', help: 'events about this operator' },
    action: { type: 'string', value: 'A', help: 'one action (login), or a prefix ending in * (admin.*)' },
    outcome: { type: 'string', value: 'O', help: 'only this outcome', choices: ['success', 'failure', 'denied'] },
    since: { type: 'string', value: 'T', help: 'from this time on' },
    until: { type: 'string', value: 'T', help: 'up to this time' },
    limit: { type: 'string', value: 'N', help: 'at most N rows: 1 to 1000 (default 100)' },
    'before-id': { type: 'string', value: 'N', help: 'page on: rows older than this id' },
};

export const auditCommand: Command = {
  name: 'audit',
  summary: 'the audit trail, newest first',
  local: true,
  options: {
    ...AUDIT_FILTERS,
    ...JSON_OPTION,
  },
  details:
    'T is an ISO-8601 date or time (UTC unless it names a zone) or an age like 30m, 12h, 7d. When a\n' +
    'page is full, stderr says the --before-id that shows the next one.',
  examples: ['hellwall audit --email ops@example.com --since 7d', "hellwall audit --action 'admin.*' --outcome denied --json"],
  run: (ctx, args) => {
    const now = Date.now();
    const v = (name: string): string | undefined => text(args, name);
    const query: Partial<AuditQuery> = {
      ...(v('email') !== undefined && { email: v('email') }),
      ...(v('action') !== undefined && { action: v('action') }),
      ...(v('outcome') !== undefined && { outcome: v('outcome') as AuditOutcome }),
      ...(v('since') !== undefined && { since: parseTime(v('since')!, '--since', now) }),
      ...(v('until') !== undefined && { until: parseTime(v('until')!, '--until', now) }),
      ...(v('limit') !== undefined && { limit: wholeNumber(v('limit')!, '--limit') }),
      ...(v('before-id') !== undefined && { beforeId: wholeNumber(v('before-id')!, '--before-id') }),
    };
    // Checked before anything is opened; the service checks again (it does for the wire).
    const { limit } = checkAuditQuery(query);
    return withAdmin(ctx, async (admin, actor) => {
      const rows = await admin.queryAudit(actor, query);
      ctx.out(auditText(rows.map(auditView), flag(args, 'json')));
      if (!flag(args, 'json') && rows.length === limit) ctx.note(`${limit} rows shown (the limit); older ones: --before-id ${rows.at(-1)!.id}`);
      return 0;
    });
  },
};
