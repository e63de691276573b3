import type { RecoveryDeviceRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/** [P-4.20] recovery.device (4Auth "update MAC"): passcode + password + TOTP register this device. */
export const recoveryDevice: Handler<RecoveryDeviceRequest> = async (services, req, ctx) => ({
  status: 'ok',
  ...(await services.recovery.device(
    {
      email: req.email,
      passcode: req.passcode,
      mac: req.mac,
      seenIp: ctx.ip,
      clientTime: req.clientTime,
      password: req.password,
      totp: req.totp,
      oldMac: req.oldMac,
      name: req.name,
      // TOTP is the flow's own check, so it is not a proof here; every other factor the account has
      // must be, the face included (ASVS 6.4.3) [P-4.30].
      factorProofs: { face: req.face },
    },
    ctx.log,
  )),
});
