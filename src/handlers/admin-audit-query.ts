import { AUDIT_PAGE_DEFAULT } from '../services/admin-service.js';
import type { AdminAuditQueryRequest } from '../protocol/messages.gen.js';
import { asAdmin, auditView } from './admin-common.js';
import type { Handler } from './context.js';

/** [P-4.12] admin.audit.query: one page of the audit trail, newest first, with where to read on. */
export const adminAuditQuery: Handler<AdminAuditQueryRequest> = (services, req, ctx) =>
  asAdmin(services, req, ctx, 'admin.audit.query', async (actor) => {
    const { email, action, outcome, since, until, beforeId, limit } = req;
    const rows = await services.admin.queryAudit(actor, { email, action, outcome, since, until, beforeId, limit });
    const pageSize = limit ?? AUDIT_PAGE_DEFAULT;
    const last = rows.at(-1);
    return {
      status: 'ok',
      events: rows.map(auditView),
      ...(last && rows.length === pageSize && { nextBeforeId: last.id }),
    };
  });
