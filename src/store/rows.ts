import type { DeviceRecord } from './store.js';
import type { AuditRecord, CounterRecord, FactorRecord, PasscodeRecord, RetiredTokenRecord, SealedSecretRecord, SessionRecord, UserRecord } from './store.js';

// Rows as both backends' drivers answer them (snake_case columns; times as numbers: PostgreSQL's
// BIGINT is parsed to a number by the store's type parser), and the records the Store answers.
// One place, so the two backends cannot drift in what a record holds.

export interface UserRow {
  id: number;
  email: string;
  phone: string;
  role: string;
  password_hash: string;
  /** SQLite answers 0/1, PostgreSQL a boolean. */
  disabled: boolean | number;
  created_at: number;
}

export interface SessionRow {
  id: number;
  user_id: number;
  master: Buffer;
  mac: string;
  ip: string;
  created_at: number;
  last_seen_at: number;
  expires_at: number;
  absolute_expires_at: number;
  generation: number;
  revoked_at: number | null;
  revoke_reason: string | null;
  key_id: number;
  device: string | null;
  scope: string;
  user_email: string;
  user_role: string;
  user_disabled: boolean | number;
}

export interface PasscodeRow {
  user_id: number;
  hash: Buffer;
  mac: string;
  seen_ip: string;
  reported_ip: string | null;
  created_at: number;
  expires_at: number;
  attempts: number;
  key_id: number;
}

export interface RetiredRow {
  master: Buffer;
  session_id: number;
  generation: number;
  retired_at: number;
  grace_until: number;
  nonce: Buffer;
  key_id: number;
  rotate_key_id: number;
}

export interface AuditRow {
  id: number;
  at: number;
  action: string;
  outcome: AuditRecord['outcome'];
  user_id: number | null;
  email: string | null;
  actor: string | null;
  ip: string | null;
  mac: string | null;
  session_id: number | null;
  detail: string | null;
}

export interface CounterRow {
  key: string;
  count: number;
  until: number;
  expires_at: number;
}

export const toUser = (r: UserRow): UserRecord => ({
  id: r.id,
  email: r.email,
  phone: r.phone,
  role: r.role,
  passwordHash: r.password_hash,
  disabled: Boolean(r.disabled),
  createdAt: r.created_at,
});

export const toSession = (r: SessionRow): SessionRecord => ({
  id: r.id,
  userId: r.user_id,
  master: r.master,
  mac: r.mac,
  ip: r.ip,
  createdAt: r.created_at,
  lastSeenAt: r.last_seen_at,
  expiresAt: r.expires_at,
  absoluteExpiresAt: r.absolute_expires_at,
  generation: r.generation,
  revokedAt: r.revoked_at,
  revokeReason: r.revoke_reason,
  userEmail: r.user_email,
  userRole: r.user_role,
  userDisabled: Boolean(r.user_disabled),
  keyId: r.key_id,
  device: r.device,
  // Anything but `enroll` is a full session: the column only ever holds the two.
  scope: r.scope === 'enroll' ? 'enroll' : 'full',
});

export const toPasscode = (r: PasscodeRow): PasscodeRecord => ({
  userId: r.user_id,
  hash: r.hash,
  mac: r.mac,
  seenIp: r.seen_ip,
  reportedIp: r.reported_ip,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
  attempts: r.attempts,
  keyId: r.key_id,
});

export const toRetired = (r: RetiredRow): RetiredTokenRecord => ({
  master: r.master,
  sessionId: r.session_id,
  generation: r.generation,
  retiredAt: r.retired_at,
  graceUntil: r.grace_until,
  nonce: r.nonce,
  keyId: r.key_id,
  rotateKeyId: r.rotate_key_id,
});

export const toAudit = (r: AuditRow): AuditRecord => ({
  id: r.id,
  at: r.at,
  action: r.action,
  outcome: r.outcome,
  userId: r.user_id,
  email: r.email,
  actor: r.actor,
  ip: r.ip,
  mac: r.mac,
  sessionId: r.session_id,
  detail: r.detail === null ? null : (JSON.parse(r.detail) as AuditRecord['detail']),
});

export const toCounter = (r: CounterRow): CounterRecord => ({ count: r.count, until: r.until, expiresAt: r.expires_at });


export interface FactorRow {
  user_id: number;
  factor: string;
  confirmed_at: number | null;
  /** SQLite answers 0/1, PostgreSQL a boolean. */
  must_enroll: boolean | number;
  last_step: number;
  created_at: number;
}

export interface SecretRow {
  user_id: number;
  kind: string;
  key_id: number;
  sealed: Buffer;
  updated_at: number;
}

export const toFactor = (r: FactorRow): FactorRecord => ({
  userId: r.user_id,
  factor: r.factor,
  confirmedAt: r.confirmed_at,
  mustEnroll: Boolean(r.must_enroll),
  lastStep: r.last_step,
  createdAt: r.created_at,
});

export const toSecret = (r: SecretRow): SealedSecretRecord => ({
  userId: r.user_id,
  kind: r.kind,
  keyId: r.key_id,
  sealed: r.sealed,
  updatedAt: r.updated_at,
});

export interface DeviceRow {
  user_id: number;
  mac: string;
  name: string | null;
  first_seen_at: number | null;
  last_seen_at: number | null;
  last_ip: string | null;
  registered_at: number | null;
  registered_by: string | null;
}

export const DEVICE_COLS = 'user_id, mac, name, first_seen_at, last_seen_at, last_ip, registered_at, registered_by';

export const toDevice = (r: DeviceRow): DeviceRecord => ({
  userId: r.user_id,
  mac: r.mac,
  name: r.name,
  firstSeenAt: r.first_seen_at,
  lastSeenAt: r.last_seen_at,
  lastIp: r.last_ip,
  registeredAt: r.registered_at,
  registeredBy: r.registered_by,
});
