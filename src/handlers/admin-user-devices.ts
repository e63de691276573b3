import type { AdminUserDevicesRequest } from '../protocol/messages.gen.js';
import { asAdmin } from './admin-common.js';
import type { Handler } from './context.js';

/** [P-4.42] admin.user.devices: one operator's known devices. */
export const adminUserDevices: Handler<AdminUserDevicesRequest> = (services, req, ctx) =>
  asAdmin(services, req, ctx, 'admin.user.devices', async (actor) => ({
    status: 'ok',
    devices: await services.devices.listFor(actor, req.email),
  }));
