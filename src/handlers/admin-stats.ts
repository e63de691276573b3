import type { AdminStatsRequest } from '../protocol/messages.gen.js';
import { asAdmin } from './admin-common.js';
import type { Handler } from './context.js';

/** [P-4.12] admin.stats: session and passcode counts now. */
export const adminStats: Handler<AdminStatsRequest> = (services, req, ctx) =>
  asAdmin(services, req, ctx, 'admin.stats', async (actor) => {
    const { sessionsPerUser, ...counts } = await services.admin.stats(actor);
    return {
      status: 'ok',
      ...counts,
      // An array rather than a map: every schema object has fixed fields [P-5.2], and generated
      // types in other languages read a list of records more easily than open-ended keys.
      sessionsPerUser: Object.entries(sessionsPerUser)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([email, sessions]) => ({ email, sessions })),
    };
  });
