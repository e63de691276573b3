import type { Account, AdminSession, AuditEntry } from '../protocol/messages.gen.js';
import { fields, isoTime, json, table } from './output.js';

// How admin records are shown, from their wire shapes (src/services/views.ts makes those from the
// store): the local commands and the client's remote admin commands print through these, so
// `hellwall user list` and `hellwall client admin user list` look the same, table and --json.

export function usersText(users: readonly Account[], asJson: boolean): string {
  if (asJson) return json(users);
  return table(['id', 'email', 'phone', 'role', 'disabled', 'created'], users.map((u) => [u.id, u.email, u.phone, u.role, u.disabled ? 'yes' : 'no', isoTime(u.createdAt)]));
}

export function userText(user: Account & { activeSessions: number }, asJson: boolean): string {
  return asJson ? json(user) : fields({ ...user, createdAt: isoTime(user.createdAt) });
}

export function sessionsText(sessions: readonly AdminSession[], asJson: boolean): string {
  if (asJson) return json(sessions);
  return table(
    ['id', 'email', 'mac', 'ip', 'device', 'device name', 'registered', 'created', 'last seen', 'expires'],
    sessions.map((s) => [s.id, s.email, s.mac, s.ip, s.device, s.deviceName, registered(s.deviceRegistered), isoTime(s.createdAt), isoTime(s.lastSeenAt), isoTime(s.expiresAt)]),
  );
}

// `-` (as for any absent value) when the MAC is not a known device yet: not the same as `no`.
function registered(flag: boolean | undefined): string | undefined {
  return flag === undefined ? undefined : flag ? 'yes' : 'no';
}

export interface StatsView {
  readonly activeSessions: number;
  readonly activeUsers: number;
  readonly expiredSessions: number;
  readonly pendingPasscodes: number;
  readonly sessionsPerUser: Readonly<Record<string, number>>;
}

export function statsText(stats: StatsView, asJson: boolean): string {
  if (asJson) return json(stats);
  const lines = [
    `active sessions    ${stats.activeSessions}`,
    `active users       ${stats.activeUsers}`,
    `expired sessions   ${stats.expiredSessions}`,
    `pending passcodes  ${stats.pendingPasscodes}`,
  ];
  if (stats.activeUsers > 0) lines.push('', table(['email', 'sessions'], Object.entries(stats.sessionsPerUser)));
  return lines.join('\n');
}

/** An audit row for scripts: every field (null when absent), `detail` as an object. */
export function auditRecordJson(e: AuditEntry): Record<string, unknown> {
  return {
    id: e.id,
    at: e.at,
    action: e.action,
    outcome: e.outcome,
    userId: e.userId ?? null,
    email: e.email ?? null,
    actor: e.actor ?? null,
    ip: e.ip ?? null,
    mac: e.mac ?? null,
    sessionId: e.sessionId ?? null,
    detail: e.detail === undefined ? null : (JSON.parse(e.detail) as unknown),
  };
}

/** `key=value` pairs on one line; a value with spaces, quotes or `=` is quoted as JSON. */
function compactDetail(detail: string | undefined): string {
  if (detail === undefined) return '';
  return Object.entries(JSON.parse(detail) as Record<string, unknown>)
    .map(([k, v]) => `${k}=${typeof v === 'string' && !/^[^\s"=]+$/.test(v) ? JSON.stringify(v) : String(v)}`)
    .join(' ');
}

/**
 * Audit rows hold what unauthenticated clients sent (an email may carry an ESC byte): `table` shows
 * control and bidi characters escaped, so a row cannot rewrite the terminal.
 */
export function auditText(entries: readonly AuditEntry[], asJson: boolean): string {
  if (asJson) return json(entries.map(auditRecordJson));
  return table(
    ['id', 'time', 'action', 'outcome', 'email', 'actor', 'ip', 'mac', 'session', 'detail'],
    entries.map((r) => [r.id, isoTime(r.at), r.action, r.outcome, r.email, r.actor, r.ip, r.mac, r.sessionId, compactDetail(r.detail)]),
  );
}
