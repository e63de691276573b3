import type { AdminUserResetPasswordRequest } from '../protocol/messages.gen.js';
import { asAdmin, userView } from './admin-common.js';
import type { Handler } from './context.js';

/** [P-4.12] admin.user.reset_password: a new password; every session of the account ends. */
export const adminUserResetPassword: Handler<AdminUserResetPasswordRequest> = (services, req, ctx) =>
  asAdmin(services, req, ctx, 'admin.user.reset_password', async (actor) => {
    const { user, sessionsEnded } = await services.admin.resetPassword(actor, req.email, req.password);
    return { status: 'ok', user: userView(user), sessionsEnded };
  });
