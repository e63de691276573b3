import type { TokenCheckRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/** [P-4.4] token.check: synchronous, because it is the hot path and needs no I/O but SQLite. */
export const tokenCheck: Handler<TokenCheckRequest> = (services, req, ctx) =>
  services.tokens.check({ token: req.token, mac: req.mac, seenIp: ctx.ip, request: req.request }, ctx.log);
