import type { FaceEnrollRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/** [P-4.30] face.enroll: the first image of the caller's face; pending until face.confirm. */
export const faceEnroll: Handler<FaceEnrollRequest> = async (services, req, ctx) => ({
  status: 'ok',
  ...(await services.face.enroll({ token: req.token, mac: req.mac, seenIp: ctx.ip }, req.image, ctx.log)),
});
