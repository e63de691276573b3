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
    },
    ctx.log,
  )),
});
