import type { FaceRemoveRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/** [P-4.30] face.remove: the caller's face factor, proven by a current image of the face. */
export const faceRemove: Handler<FaceRemoveRequest> = async (services, req, ctx) => ({
  status: 'ok',
  removed: await services.face.remove({ token: req.token, mac: req.mac, seenIp: ctx.ip }, req.image, ctx.log),
});
