import type { PasscodeAuthRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/** [P-4.3] passcode.auth: every factor must match; the answer opens a session. */
export const passcodeAuth: Handler<PasscodeAuthRequest> = async (services, req, ctx) => {
  const result = await services.passcodes.authenticate(
    { email: req.email, phone: req.phone, password: req.password, passcode: req.passcode, mac: req.mac, seenIp: ctx.ip, device: req.device, clientTime: req.clientTime, factorProofs: { totp: req.totp, face: req.face } },
    ctx.log,
  );
  return { status: 'ok', ...result };
};
