import type { SessionListRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/** [P-4.10] session.list: the operator's active sessions; never a token. */
export const sessionList: Handler<SessionListRequest> = async (services, req, ctx) => ({
  status: 'ok',
  sessions: await services.sessions.list({ token: req.token, mac: req.mac, seenIp: ctx.ip }, ctx.log),
});
