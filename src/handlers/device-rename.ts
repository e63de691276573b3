import type { DeviceRenameRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/** [P-4.41] device.rename: the operator names one of their known devices. */
export const deviceRename: Handler<DeviceRenameRequest> = async (services, req, ctx) => ({
  status: 'ok',
  device: await services.devices.rename({ token: req.token, mac: req.mac, seenIp: ctx.ip }, req.device, req.name ?? null, ctx.log),
});
