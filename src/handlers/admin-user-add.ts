import type { AdminUserAddRequest } from '../protocol/messages.gen.js';
import { asAdmin, userView } from './admin-common.js';
import type { Handler } from './context.js';

/** [P-4.12] admin.user.add: a new operator; the password is hashed and never logged or audited. */
export const adminUserAdd: Handler<AdminUserAddRequest> = (services, req, ctx) =>
  asAdmin(services, req, ctx, 'admin.user.add', async (actor) => {
    const user = await services.admin.addUser(actor, { email: req.email, phone: req.phone, role: req.role ?? 'user', password: req.password });
    return { status: 'ok', user: userView(user) };
  });
