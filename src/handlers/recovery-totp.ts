import type { RecoveryTotpRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/** [P-4.19] recovery.totp: lost authenticator; passcode + password + recovery code remove it. */
export const recoveryTotp: Handler<RecoveryTotpRequest> = async (services, req, ctx) => ({
  status: 'ok',
  ...(await services.recovery.totp(
    {
      email: req.email,
      passcode: req.passcode,
      mac: req.mac,
      seenIp: ctx.ip,
      clientTime: req.clientTime,
      password: req.password,
      recoveryCode: req.recoveryCode,
      // The recovery code stands in for the lost TOTP; every other factor the account has must still
      // be proven, the face included (ASVS 6.4.3) [P-4.30].
      factorProofs: { face: req.face },
    },
    ctx.log,
  )),
});
