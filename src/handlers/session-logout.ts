import type { SessionLogoutRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/** [P-4.8] session.logout: ends the caller's own session. */
export const sessionLogout: Handler<SessionLogoutRequest> = async (services, req, ctx) => {
  await services.sessions.logout({ token: req.token, mac: req.mac, seenIp: ctx.ip }, ctx.log);
  return { status: 'ok' };
};
