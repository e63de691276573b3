import type { Account, AdminSession, AuditEntry } from '../protocol/messages.gen.js';
import type { AuditRecord, SessionRecord, UserRecord } from '../store/store.js';
import type { SessionDevice } from './device-service.js';

// How the admin commands show what the store holds, shared by the wire handlers and the CLI: the
// one place that decides which fields leave the server (never a hash, a token or a secret).

/** An operator as admin commands show one: never the password hash. */
export function userView(u: UserRecord): Account {
  return { id: u.id, email: u.email, phone: u.phone, role: u.role, disabled: u.disabled, createdAt: u.createdAt };
}

/**
 * A session as admin commands show one: never a token or master token. Its known-device fields
 * when the AdminService filled them in (withKnownDevices).
 */
export function adminSessionView(s: SessionRecord & SessionDevice): AdminSession {
  return {
    id: s.id,
    email: s.userEmail,
    mac: s.mac,
    ip: s.ip,
    ...(s.device !== null && { device: s.device }),
    ...(s.deviceName !== undefined && { deviceName: s.deviceName }),
    ...(s.deviceRegistered !== undefined && { deviceRegistered: s.deviceRegistered }),
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
