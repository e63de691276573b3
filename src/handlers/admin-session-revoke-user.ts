import type { AdminSessionRevokeUserRequest } from '../protocol/messages.gen.js';
import { asAdmin } from './admin-common.js';
import type { Handler } from './context.js';

/** [P-4.12] admin.session.revoke_user: ends every session of one operator. */
export const adminSessionRevokeUser: Handler<AdminSessionRevokeUserRequest> = (services, req, ctx) =>
  asAdmin(services, req, ctx, 'admin.session.revoke_user', async (actor) => ({
    status: 'ok',
    ended: (await services.admin.revokeUserSessions(actor, req.email)).ended,
  }));
