import type { TokenCheckRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/**
 * [P-4.4] token.check: the hot path. Answers synchronously when the session is in the node's cache
 * (the common case: no promise, no I/O), asynchronously when the store must be asked.
 */
export const tokenCheck: Handler<TokenCheckRequest> = (services, req, ctx) =>
  services.tokens.check({ token: req.token, mac: req.mac, seenIp: ctx.ip, request: req.request }, ctx.log);
