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
      // TOTP (or the recovery code standing in for it) is the flow's own check, so it is not a proof
      // here; every other factor the account has must be, the face included (ASVS 6.4.3) [P-4.30].
      factorProofs: { face: req.face },
    },
    ctx.log,
  )),
});
