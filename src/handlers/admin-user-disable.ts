import type { AdminUserDisableRequest } from '../protocol/messages.gen.js';
import { asAdmin, userView } from './admin-common.js';
import type { Handler } from './context.js';

/** [P-4.12] admin.user.disable: the account is disabled and every session of it ends. */
export const adminUserDisable: Handler<AdminUserDisableRequest> = (services, req, ctx) =>
  asAdmin(services, req, ctx, 'admin.user.disable', async (actor) => {
    const { user, sessionsEnded } = await services.admin.disableUser(actor, req.email);
    return { status: 'ok', user: userView(user), sessionsEnded };
  });
