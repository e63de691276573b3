import type { FaceConfirmRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/** [P-4.30] face.confirm: a second image of the same face; from then on the factor counts. */
export const faceConfirm: Handler<FaceConfirmRequest> = async (services, req, ctx) => ({
  status: 'ok',
  ...(await services.face.confirm({ token: req.token, mac: req.mac, seenIp: ctx.ip }, req.image, ctx.log)),
});
