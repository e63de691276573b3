import type { AdminUserListRequest } from '../protocol/messages.gen.js';
import { asAdmin, userView } from './admin-common.js';
import type { Handler } from './context.js';

/** [P-4.12] admin.user.list: every account. */
export const adminUserList: Handler<AdminUserListRequest> = (services, req, ctx) =>
  asAdmin(services, req, ctx, 'admin.user.list', async (actor) => ({ status: 'ok', users: (await services.admin.listUsers(actor)).map(userView) }));
