import type { Actor, AdminCommand } from '../services/admin-service.js';
import type { Logger } from '../deps.js';
import type { RequestContext, Services } from './context.js';

/**
 * [P-4.12] Runs one admin command: authenticates the caller as an administrator, then `fn` with the
 * actor. A refusal of the admin service (already audited there) reaches the dispatcher, which
 * answers its wire code; its message is for the administrator and names no secret.
 */
export async function asAdmin<T>(
  services: Services,
  req: { token: string; mac: string },
  ctx: RequestContext,
  command: AdminCommand,
  fn: (actor: Actor, log: Logger) => T | Promise<T>,
): Promise<T> {
  const actor = await services.admin.authorize({ token: req.token, mac: req.mac, seenIp: ctx.ip }, command, ctx.log);
  return fn(actor, ctx.log);
}

export { adminSessionView, auditView, userView } from '../services/views.js';
