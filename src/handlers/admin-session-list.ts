import type { AdminSessionListRequest } from '../protocol/messages.gen.js';
import { adminSessionView, asAdmin } from './admin-common.js';
import type { Handler } from './context.js';

/** [P-4.12] admin.session.list: active sessions of every operator, or of one; never a token. */
export const adminSessionList: Handler<AdminSessionListRequest> = (services, req, ctx) =>
  asAdmin(services, req, ctx, 'admin.session.list', async (actor) => ({
    status: 'ok',
    sessions: (await services.admin.listSessions(actor, req.email)).map(adminSessionView),
  }));
