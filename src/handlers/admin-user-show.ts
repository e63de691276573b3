import type { AdminUserShowRequest } from '../protocol/messages.gen.js';
import { asAdmin, userView } from './admin-common.js';
import type { Handler } from './context.js';

/** [P-4.12] admin.user.show: one account and its number of active sessions. */
export const adminUserShow: Handler<AdminUserShowRequest> = (services, req, ctx) =>
  asAdmin(services, req, ctx, 'admin.user.show', async (actor) => {
    const { user, activeSessions } = await services.admin.showUser(actor, req.email);
    return { status: 'ok', user: userView(user), activeSessions };
  });
