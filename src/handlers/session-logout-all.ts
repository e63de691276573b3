import type { SessionLogoutAllRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/** [P-4.9] session.logout_all: "log out everywhere", this session included. */
export const sessionLogoutAll: Handler<SessionLogoutAllRequest> = async (services, req, ctx) => ({
  status: 'ok',
  ended: await services.sessions.logoutAll({ token: req.token, mac: req.mac, seenIp: ctx.ip }, ctx.log),
});
