/**
 * The storage interface every service uses. SQLite implements it today; a second backend
 * (PostgreSQL) is meant to be an addition behind this same interface. Methods are synchronous
 * because better-sqlite3 is, and the token check's speed depends on that.
 */

export interface UserRecord {
  readonly id: number;
  readonly email: string;
  readonly phone: string;
  readonly role: string;
  readonly passwordHash: string;
  readonly disabled: boolean;
  readonly createdAt: number;
}

export interface NewUser {
  readonly email: string;
  readonly phone: string;
  readonly role: string;
  readonly passwordHash: string;
  readonly createdAt: number;
}

export interface PasscodeRecord {
  readonly userId: number;
  /** Keyed hash of the passcode; the passcode itself is never stored. */
  readonly hash: Buffer;
  readonly mac: string;
  readonly seenIp: string;
  readonly reportedIp: string | null;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly attempts: number;
  /** The server key the hash was made with; the passcode verifies only while that key is live. */
  readonly keyId: number;
}

export interface NewSession {
  readonly userId: number;
  readonly master: Buffer;
  readonly mac: string;
  readonly ip: string;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly absoluteExpiresAt: number;
  /** The server key the master token was made with. */
  readonly keyId: number;
  /** What the client said about its device at login (passcode.auth `device`), if anything. */
  readonly device?: string | null;
}

export interface SessionRecord extends NewSession {
  readonly device: string | null;
  readonly id: number;
  readonly lastSeenAt: number;
  readonly generation: number;
  readonly revokedAt: number | null;
  readonly revokeReason: string | null;
  /** The owner, joined in the same statement so a token check costs one lookup. */
  readonly userEmail: string;
  readonly userRole: string;
  readonly userDisabled: boolean;
}

/**
 * A session that can still answer `authorized` or be renewed: not revoked, owner enabled, and either
 * its token is current or it is inside both renewal limits [P-4.5]. The token service's rules.
 */
export function isActiveSession(s: SessionRecord, now: number, idleMs: number): boolean {
  if (s.revokedAt !== null || s.userDisabled) return false;
  if (now < s.expiresAt) return true;
  return now < s.absoluteExpiresAt && now < s.lastSeenAt + idleMs;
}

/** A master token that a renewal replaced; kept to serve the grace and to detect reuse. */
export interface RetiredTokenRecord {
  readonly master: Buffer;
  readonly sessionId: number;
  readonly generation: number;
  readonly retiredAt: number;
  readonly graceUntil: number;
  readonly nonce: Buffer;
  /** The server key this (old) master token was made with. */
  readonly keyId: number;
  /** The server key the rotation was made with: the successor token and master come from it. */
  readonly rotateKeyId: number;
}

export interface Rotation {
  readonly sessionId: number;
  readonly oldMaster: Buffer;
  readonly newMaster: Buffer;
  readonly generation: number;
  readonly now: number;
  readonly expiresAt: number;
  readonly graceUntil: number;
  readonly nonce: Buffer;
  /** The key the new master token (and the rotated token) is made with: the current one. */
  readonly keyId: number;
  /** The key the old master token was made with; recorded with the retired token. */
  readonly oldKeyId: number;
}

export class DuplicateUserError extends Error {
  override name = 'DuplicateUserError';
}

/**
 * The database is locked by someone else beyond the store's short wait; nothing was changed and
 * the operation may be retried. Every backend reports contention as this, so callers need not know
 * the backend's own error codes.
 */
export class StoreBusyError extends Error {
  override name = 'StoreBusyError';
}

/**
 * What housekeeping may delete, relative to `now`. A session is dead when it can neither answer
 * `authorized` nor be renewed again: its token has expired and it is past its absolute limit or
 * idle beyond `idleMs` (the renewal idle limit). Revoked sessions are kept `keepRevokedMs` after
 * their revocation, for forensics, whatever their limits.
 */
export interface ExpiryPolicy {
  readonly idleMs: number;
  readonly keepRevokedMs: number;
  /** At most this many rows per table per call. */
  readonly batch: number;
  /** Audit rows older than this are deleted; 0 or absent: audit rows are kept forever. */
  readonly keepAuditMs?: number;
}

/**
 * Rows deleted, by table. A table that gains a retention rule later (the audit log) adds its
 * count here; the housekeeper and `hellwall cleanup` report every key they are given.
 */
export interface ExpiredCounts {
  /** Pending passcodes past their expiry. */
  readonly passcodes: number;
  readonly sessions: number;
  /** Rotated-out tokens of dead sessions (kept while their session lives, for reuse detection). */
  readonly retiredTokens: number;
  /** Audit rows past retention. */
  readonly auditRows: number;
}

/**
 * How an audited event ended: `success`; `failure` (wrong credentials, unknown account or session,
 * invalid input, a reused token, a mail that could not be delivered); `denied` (a valid caller the
 * policy, a role check or a rate limit refused).
 */
export const AUDIT_OUTCOMES = ['success', 'failure', 'denied'] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

/** Extra facts of one audit event. Never a secret: no password, passcode, token or hash. */
export type AuditDetail = Readonly<Record<string, string | number | boolean | null>>;

/** One event for the audit trail. Absent fields are stored as NULL. */
export interface AuditEvent {
  readonly at: number;
  /** What happened, e.g. `login`, `token.renew`, `admin.user.disable` (see AUDIT_ACTIONS). */
  readonly action: string;
  readonly outcome: AuditOutcome;
  /** The operator the event is about, when known. */
  readonly userId?: number | null;
  /** The operator's email as it was then, or as sent when no such account exists. */
  readonly email?: string | null;
  /** Who acted, when not the operator themself: `admin:<email>` on the wire, `cli:<os user>`. */
  readonly actor?: string | null;
  readonly ip?: string | null;
  readonly mac?: string | null;
  readonly sessionId?: number | null;
  readonly detail?: AuditDetail | null;
}

export interface AuditRecord {
  readonly id: number;
  readonly at: number;
  readonly action: string;
  readonly outcome: AuditOutcome;
  readonly userId: number | null;
  readonly email: string | null;
  readonly actor: string | null;
  readonly ip: string | null;
  readonly mac: string | null;
  readonly sessionId: number | null;
  readonly detail: AuditDetail | null;
}

/** Filters of an audit query; all optional, combined with AND. Newest first. */
export interface AuditQuery {
  readonly email?: string;
  /** An action name, or a prefix ending in `*` (`admin.*`). */
  readonly action?: string;
  readonly outcome?: AuditOutcome;
  /** Inclusive lower bound on `at` (ms). */
  readonly since?: number;
  /** Exclusive upper bound on `at` (ms). */
  readonly until?: number;
  /** Only rows with a smaller id: the next page after a page whose last row had this id. */
  readonly beforeId?: number;
  readonly limit: number;
}

export interface Store {
  /** Runs `fn` atomically; nested calls join the outer transaction. */
  transaction<T>(fn: () => T): T;

  /**
   * Runs `fn` (the synchronous handling of one incoming read) as one batch: the store may answer
   * session lookups inside it from a cache it validated once for the whole batch. Writes inside
   * it are seen by later lookups.
   */
  readBatch<T>(fn: () => T): T;

  createUser(user: NewUser): UserRecord;
  findUserByEmail(email: string): UserRecord | undefined;
  /**
   * Replaces the user's password hash. With `ifCurrent`, only while the stored hash is still that
   * one (a rehash must not undo a password change made while it was computing); false when nothing
   * was changed.
   */
  setPasswordHash(userId: number, passwordHash: string, ifCurrent?: string): boolean;
  /** Every user, by id. */
  listUsers(): UserRecord[];
  /** Sets the disabled flag; false when there is no such user. */
  setUserDisabled(userId: number, disabled: boolean): boolean;
  setUserRole(userId: number, role: string): boolean;
  /** Deletes the user with their sessions and pending passcode (cascade); false when none. */
  deleteUser(userId: number): boolean;
  /** Revokes every session of the user still open; returns how many. */
  revokeUserSessions(userId: number, now: number, reason: string): number;

  /** Stores the user's pending passcode, replacing any earlier one. */
  putPasscode(passcode: PasscodeRecord): void;
  getPasscode(userId: number): PasscodeRecord | undefined;
  deletePasscode(userId: number): void;
  setPasscodeAttempts(userId: number, attempts: number): void;

  createSession(session: NewSession): number;
  findSessionByMaster(master: Buffer): SessionRecord | undefined;
  findSessionById(id: number): SessionRecord | undefined;
  findRetiredToken(master: Buffer): RetiredTokenRecord | undefined;
  /** Replaces the session's master token; false if it was rotated or revoked meanwhile. */
  rotateSession(rotation: Rotation): boolean;
  /** Records last activity; best effort: false when the database was busy and nothing was written. */
  touchSession(id: number, now: number): boolean;
  revokeSession(id: number, now: number, reason: string): void;
  /**
   * Sessions of the user that are not revoked, by creation (oldest first). Includes sessions past
   * their limits; callers decide what "active" means (see isActiveSession).
   */
  listOpenSessions(userId: number): SessionRecord[];
  /** Every session not revoked, of every user, oldest first (for operators). */
  listAllOpenSessions(): SessionRecord[];
  /** Passcodes requested and not yet used, voided or expired. */
  countPendingPasscodes(now: number): number;

  /** Sessions not revoked and inside their absolute limit, by the server key their master was made with. */
  countSessionsByKey(now: number): Map<number, number>;
  /**
   * When a server key is retired: revokes every session whose master token was made with it and
   * deletes pending passcodes hashed with it (neither would verify any more).
   */
  revokeByKey(keyId: number, now: number, reason: string): { sessions: number; passcodes: number };

  /** Sessions that are active by isActiveSession's rules, counted in SQL (the gauge; no rows loaded). */
  countActiveSessions(now: number, idleMs: number): number;

  /** Whether a transaction is open on this connection: an audit row written now commits with it. */
  inTransaction(): boolean;
  /** Appends audit events in one transaction (joining the caller's, if one is open). */
  appendAudit(events: readonly AuditEvent[]): void;
  /** Audit rows matching `query`, newest first, at most `query.limit`. */
  queryAudit(query: AuditQuery): AuditRecord[];
  /**
   * Deletes dead rows (see ExpiryPolicy): at most `policy.batch` per table, in one short
   * transaction, through indexes. Call again while any count equals the batch size.
   */
  deleteExpired(now: number, policy: ExpiryPolicy): ExpiredCounts;
  /** Throws when the database cannot answer a trivial query (readiness). */
  ping(): void;

  close(): void;
}
