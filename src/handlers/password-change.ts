import type { PasswordChangeRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/** [P-4.13] password.change: the caller's own password; their other sessions end. */
export const passwordChange: Handler<PasswordChangeRequest> = async (services, req, ctx) => ({
  status: 'ok',
  sessionsEnded: await services.account.changePassword({ token: req.token, mac: req.mac, seenIp: ctx.ip }, req.password, req.newPassword, ctx.log),
});
