import type { SessionRevokeRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/** [P-4.11] session.revoke: ends one of the caller's operator's own sessions (a lost device). */
export const sessionRevoke: Handler<SessionRevokeRequest> = async (services, req, ctx) => {
  await services.sessions.revoke({ token: req.token, mac: req.mac, seenIp: ctx.ip }, req.sessionId, ctx.log);
  return { status: 'ok' };
};
