import type { AdminDeviceRemoveRequest } from '../protocol/messages.gen.js';
import { asAdmin } from './admin-common.js';
import type { Handler } from './context.js';

/** [P-4.44] admin.device.remove: forgets a device of an operator and ends their sessions on it. */
export const adminDeviceRemove: Handler<AdminDeviceRemoveRequest> = (services, req, ctx) =>
  asAdmin(services, req, ctx, 'admin.device.remove', async (actor) => ({
    status: 'ok',
    ...(await services.devices.remove(actor, req.email, req.device)),
  }));
