import type { DeviceListRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/** [P-4.40] device.list: the operator's known devices. */
export const deviceList: Handler<DeviceListRequest> = async (services, req, ctx) => ({
  status: 'ok',
  devices: await services.devices.list({ token: req.token, mac: req.mac, seenIp: ctx.ip }, ctx.log),
});
