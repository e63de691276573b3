import type { AdminUserEnableRequest } from '../protocol/messages.gen.js';
import { asAdmin, userView } from './admin-common.js';
import type { Handler } from './context.js';

/** [P-4.12] admin.user.enable: a disabled account may log in again. */
export const adminUserEnable: Handler<AdminUserEnableRequest> = (services, req, ctx) =>
  asAdmin(services, req, ctx, 'admin.user.enable', async (actor) => ({ status: 'ok', user: userView(await services.admin.enableUser(actor, req.email)) }));
