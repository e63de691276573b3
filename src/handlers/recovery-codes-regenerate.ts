import type { RecoveryCodesRegenerateRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/** [P-4.16] recovery_codes.regenerate: new recovery codes behind a current TOTP code; the old ones void. */
export const recoveryCodesRegenerate: Handler<RecoveryCodesRegenerateRequest> = async (services, req, ctx) => ({
  status: 'ok',
  recoveryCodes: await services.enrolment.regenerateRecoveryCodes({ token: req.token, mac: req.mac, seenIp: ctx.ip }, req.totp, ctx.log),
});
