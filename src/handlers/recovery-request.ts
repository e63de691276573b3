import type { RecoveryRequestRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/** [P-4.17] recovery.request: a recovery passcode by email; the same answer whether or not the account exists. */
export const recoveryRequest: Handler<RecoveryRequestRequest> = async (services, req, ctx) => ({
  status: 'ok',
  ...(await services.recovery.request(
    { email: req.email, mac: req.mac, seenIp: ctx.ip, reportedIp: req.ip ?? null, clientTime: req.clientTime },
    ctx.log,
  )),
});
