import type { AdminUserSetRoleRequest } from '../protocol/messages.gen.js';
import { asAdmin, userView } from './admin-common.js';
import type { Handler } from './context.js';

/** [P-4.12] admin.user.set_role: the next token check of the account's sessions sees the new role. */
export const adminUserSetRole: Handler<AdminUserSetRoleRequest> = (services, req, ctx) =>
  asAdmin(services, req, ctx, 'admin.user.set_role', async (actor) => ({ status: 'ok', user: userView(await services.admin.setRole(actor, req.email, req.role)) }));
