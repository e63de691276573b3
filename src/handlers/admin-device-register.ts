import type { AdminDeviceRegisterRequest } from '../protocol/messages.gen.js';
import { asAdmin } from './admin-common.js';
import type { Handler } from './context.js';

/** [P-4.43] admin.device.register: registers a MAC for an operator. */
export const adminDeviceRegister: Handler<AdminDeviceRegisterRequest> = (services, req, ctx) =>
  asAdmin(services, req, ctx, 'admin.device.register', async (actor) => ({
    status: 'ok',
    device: await services.devices.register(actor, req.email, req.device, req.name ?? null),
  }));
