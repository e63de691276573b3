import type { RecoveryPasswordRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/** [P-4.18] recovery.password: forgotten password; passcode + TOTP or a recovery code set a new one. */
export const recoveryPassword: Handler<RecoveryPasswordRequest> = async (services, req, ctx) => ({
  status: 'ok',
  ...(await services.recovery.password(
    {
      email: req.email,
      passcode: req.passcode,
      mac: req.mac,
      seenIp: ctx.ip,
      clientTime: req.clientTime,
      newPassword: req.newPassword,
      totp: req.totp,
      recoveryCode: req.recoveryCode,
    },
    ctx.log,
  )),
});
