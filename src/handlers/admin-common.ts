import type { Actor } from '../auth/admin-service.js';
import type { Logger } from '../deps.js';
import type { AuditRecord, SessionRecord, UserRecord } from '../store/store.js';
import type { AuditAction } from '../audit/audit-log.js';
import type { Account, AdminSession, AuditEntry } from '../protocol/messages.gen.js';
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
  command: AuditAction,
  fn: (actor: Actor, log: Logger) => T | Promise<T>,
): Promise<T> {
  const actor = await services.admin.authorize({ token: req.token, mac: req.mac, seenIp: ctx.ip }, command, ctx.log);
  return fn(actor, ctx.log);
}

/** An operator as admin commands show one: never the password hash. */
export function userView(u: UserRecord): Account {
  return { id: u.id, email: u.email, phone: u.phone, role: u.role, disabled: u.disabled, createdAt: u.createdAt };
}

/** A session as admin commands show one: never a token or master token. */
export function adminSessionView(s: SessionRecord): AdminSession {
  return {
    id: s.id,
    email: s.userEmail,
    mac: s.mac,
    ip: s.ip,
    ...(s.device !== null && { device: s.device }),
    createdAt: s.createdAt,
    lastSeenAt: s.lastSeenAt,
    expiresAt: s.expiresAt,
    renewableUntil: s.absoluteExpiresAt,
  };
}

/** An audit row on the wire: absent values are left out rather than sent as null [§8]. */
export function auditView(r: AuditRecord): AuditEntry {
  return {
    id: r.id,
    at: r.at,
    action: r.action,
    outcome: r.outcome,
    ...(r.userId !== null && { userId: r.userId }),
    ...(r.email !== null && { email: r.email }),
    ...(r.actor !== null && { actor: r.actor }),
    ...(r.ip !== null && { ip: r.ip }),
    ...(r.mac !== null && { mac: r.mac }),
    ...(r.sessionId !== null && { sessionId: r.sessionId }),
    ...(r.detail !== null && { detail: JSON.stringify(r.detail) }),
  };
}
