import type { PasscodeRequestRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/** [P-4.2] passcode.request: same answer whatever the account's state. */
export const passcodeRequest: Handler<PasscodeRequestRequest> = async (services, req, ctx) => {
  const { expiresInSeconds } = await services.passcodes.request(
    { email: req.email, password: req.password, mac: req.mac, reportedIp: req.ip ?? null, seenIp: ctx.ip },
    ctx.log,
  );
  return { status: 'ok', expiresInSeconds };
};
