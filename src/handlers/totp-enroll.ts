import type { TotpEnrollRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/** [P-4.14] totp.enroll: a new, unconfirmed TOTP secret for the caller (enrolment-only sessions too). */
export const totpEnroll: Handler<TotpEnrollRequest> = async (services, req, ctx) => ({
  status: 'ok',
  ...(await services.enrolment.start({ token: req.token, mac: req.mac, seenIp: ctx.ip }, 'totp', ctx.log)),
});
