import type { TotpConfirmRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/** [P-4.15] totp.confirm: the first code makes the enrolment count; recovery codes are shown once. */
export const totpConfirm: Handler<TotpConfirmRequest> = async (services, req, ctx) => ({
  status: 'ok',
  ...(await services.enrolment.confirm({ token: req.token, mac: req.mac, seenIp: ctx.ip }, 'totp', req.totp, ctx.log)),
});
