import type { AdminUserDeleteRequest } from '../protocol/messages.gen.js';
import { asAdmin, userView } from './admin-common.js';
import type { Handler } from './context.js';

/** [P-4.12] admin.user.delete: the account goes, with its sessions and passcode. */
export const adminUserDelete: Handler<AdminUserDeleteRequest> = (services, req, ctx) =>
  asAdmin(services, req, ctx, 'admin.user.delete', async (actor) => ({ status: 'ok', user: userView(await services.admin.deleteUser(actor, req.email)) }));
