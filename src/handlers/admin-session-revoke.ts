import type { AdminSessionRevokeRequest } from '../protocol/messages.gen.js';
import { adminSessionView, asAdmin } from './admin-common.js';
import type { Handler } from './context.js';

/** [P-4.12] admin.session.revoke: ends any operator's session by id. */
export const adminSessionRevoke: Handler<AdminSessionRevokeRequest> = (services, req, ctx) =>
  asAdmin(services, req, ctx, 'admin.session.revoke', async (actor) => ({
    status: 'ok',
    session: adminSessionView(await services.admin.revokeSession(actor, req.sessionId)),
  }));
