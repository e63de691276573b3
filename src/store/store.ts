/**
 * The storage interface every service uses, and the only one: SQLite (the embedded default) and
 * PostgreSQL (several nodes on one database) implement it, and one conformance suite
 * (test/store/conformance.ts) holds both to it.
 *
 * Rules:
 * - Every data method is async. What must commit together runs in `transaction(fn)`, and goes
 *   through the `Tx` handle it is given (the audit row of a change too); a method called on the
 *   Store itself commits on its own.
 * - No rule of the domain lives here: which session is "active", when a token may renew, how many
 *   failures lock an account are the auth services' (src/services/session-rules.ts). The store stores,
 *   finds, counts and deletes by the bounds it is given.
 * - Every committed change to sessions or users is announced on `onChange`, from this process and
 *   (where the backend can tell) from every other process on the same database, so a cache in front
 *   of the store can stay correct. `coherent` says whether that feed can be trusted right now.
 * - Failures are typed: StoreBusyError (contention, retry), StoreUnavailableError (the database
 *   cannot be reached), DuplicateUserError. Nothing backend-specific leaves the store.
 */

import { ServiceError, StoreFailure } from '../errors.js';

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
  /**
   * `full` (absent: full), or `enroll`: the operator must enrol a required second factor first, and
   * the session answers nothing but that enrolment (src/services/factors.ts).
   */
  readonly scope?: SessionScope;
}

export type SessionScope = 'full' | 'enroll';

export interface SessionRecord extends NewSession {
  readonly device: string | null;
  readonly scope: SessionScope;
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

export class DuplicateUserError extends ServiceError {
  override name = 'DuplicateUserError';
  constructor(message: string) {
    super('conflict', message);
  }
}

/**
 * The database is locked by someone else beyond the store's short wait; nothing was changed and
 * the operation may be retried. Every backend reports contention as this, so callers need not know
 * the backend's own error codes.
 */
export class StoreBusyError extends StoreFailure {
  override name = 'StoreBusyError';
  readonly failure = 'busy';
}

/**
 * The database cannot be reached (down, restarting, network, pool exhausted beyond its wait).
 * Nothing was changed that the caller will not be told of; retrying later is right, and the node
 * recovers by itself when the database returns.
 */
export class StoreUnavailableError extends StoreFailure {
  override name = 'StoreUnavailableError';
  readonly failure = 'unavailable';
}

/**
 * The store cannot be opened as configured: a bad URL, refused credentials, a database whose
 * schema is newer than this code knows. The message names the setting or the cause; `serve` exits
 * non-zero with it.
 */
export class StoreConfigError extends Error {
  override name = 'StoreConfigError';
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
  /** Rate-limit and lockout counters past their expiry. */
  readonly counters: number;
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
  /** Who acted, exactly as recorded (`admin:<email>`, `console:<email>`, `cli:<os user>`). */
  readonly actor?: string;
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

/**
 * Which open sessions count, by bounds the caller computes from its own rules: a session is counted
 * when it is not revoked, its owner is enabled, and either `expiresAt > currentAfter`, or
 * `absoluteExpiresAt > renewableAfter.absolute` and `lastSeenAt > renewableAfter.lastSeen`.
 */
export interface LiveBounds {
  readonly currentAfter: number;
  readonly renewableAfter: { readonly absolute: number; readonly lastSeen: number };
}

/** What Store.sessionCounts answers. */
export interface SessionCounts {
  /** Sessions inside the bounds, by their owner's email; owners with none are absent. */
  readonly activeByUser: ReadonlyMap<string, number>;
  /** Open sessions of enabled owners outside the bounds: expired, not yet deleted by housekeeping. */
  readonly inactive: number;
}

/** A shared counter (rate limits, lockout): how many hits, and a time before which it blocks. */
export interface CounterRecord {
  readonly count: number;
  /** Milliseconds since the epoch; 0 when it never blocked. */
  readonly until: number;
  /** When the counter is forgotten (housekeeping deletes it after this). */
  readonly expiresAt: number;
}

/**
 * A committed change a cache must hear about. `session`: that session's row changed (rotated,
 * revoked, deleted). `user`: the account changed (role, disabled, deleted, password), which every
 * cached session of it carries. `all`: changes happened that the backend cannot name (another
 * process's commit seen only as "something changed", a lost notification channel).
 */
export type StoreChange =
  | { readonly kind: 'session'; readonly id: number }
  | { readonly kind: 'user'; readonly id: number }
  | { readonly kind: 'all' };

/**
 * The data operations. A Store runs each in its own transaction; a Tx runs them inside the
 * transaction it belongs to.
 */
export interface StoreOps {
  createUser(user: NewUser): Promise<UserRecord>;
  findUserByEmail(email: string): Promise<UserRecord | undefined>;
  findUserById(id: number): Promise<UserRecord | undefined>;
  /**
   * Replaces the user's password hash. With `ifCurrent`, only while the stored hash is still that
   * one (a rehash must not undo a password change made while it was computing); false when nothing
   * was changed.
   */
  setPasswordHash(userId: number, passwordHash: string, ifCurrent?: string): Promise<boolean>;
  /** Every user, by id. */
  listUsers(): Promise<UserRecord[]>;
  /** Sets the disabled flag; false when there is no such user. */
  setUserDisabled(userId: number, disabled: boolean): Promise<boolean>;
  setUserRole(userId: number, role: string): Promise<boolean>;
  /** Deletes the user with their sessions and pending passcode (cascade); false when none. */
  deleteUser(userId: number): Promise<boolean>;
  /**
   * Inside a transaction: serializes it with every other transaction that locks the same user, on
   * any node, until commit (SELECT … FOR UPDATE of the user's row; SQLite's write lock already
   * serializes writers). What depends on counting the user's rows (the session cap) takes this
   * first, since row locks cannot stop two transactions from both inserting. A no-op outside one.
   */
  lockUser(userId: number): Promise<void>;
  /** Revokes every session of the user not yet revoked; returns how many. */
  revokeUserSessions(userId: number, now: number, reason: string): Promise<number>;

  /** Stores the user's pending passcode, replacing any earlier one. */
  putPasscode(passcode: PasscodeRecord): Promise<void>;
  /**
   * The user's pending passcode. Inside a transaction the row is locked until commit (SELECT … FOR
   * UPDATE where the backend has it), so two logins racing one passcode are serialized.
   */
  getPasscode(userId: number): Promise<PasscodeRecord | undefined>;
  deletePasscode(userId: number): Promise<void>;
  setPasscodeAttempts(userId: number, attempts: number): Promise<void>;
  /** Passcodes not yet used, voided or expired at `now`. */
  countPendingPasscodes(now: number): Promise<number>;

  createSession(session: NewSession): Promise<number>;
  findSessionByMaster(master: Buffer): Promise<SessionRecord | undefined>;
  /** The session; inside a transaction its row is locked until commit (see getPasscode). */
  findSessionById(id: number): Promise<SessionRecord | undefined>;
  findRetiredToken(master: Buffer): Promise<RetiredTokenRecord | undefined>;
  /**
   * Replaces the session's master token and records the old one as retired, atomically; false
   * (and nothing changed) if the session was rotated or revoked meanwhile, by anyone.
   */
  rotateSession(rotation: Rotation): Promise<boolean>;
  /** Records last activity; best effort: false when the database was busy and nothing was written. */
  touchSession(id: number, now: number): Promise<boolean>;
  /** Revokes the session unless already revoked; false when it was (or does not exist). */
  revokeSession(id: number, now: number, reason: string): Promise<boolean>;
  /**
   * Sessions of the user that are not revoked, by creation (oldest first), including those past
   * their limits. Inside a transaction these rows are locked until commit, so two logins at the
   * session cap cannot both see room.
   */
  listOpenSessions(userId: number): Promise<SessionRecord[]>;
  /** Every session not revoked, of every user, oldest first (for operators). */
  listAllOpenSessions(): Promise<SessionRecord[]>;
  /** Open sessions inside the given bounds (see LiveBounds), counted by the database. */
  countLiveSessions(bounds: LiveBounds): Promise<number>;
  /**
   * Open sessions of enabled owners, counted by the database (not loaded: a report must cost the
   * event loop nothing however many there are): those inside `bounds` per owner, and the others.
   */
  sessionCounts(bounds: LiveBounds): Promise<SessionCounts>;

  /** Sessions not revoked and inside their absolute limit, by the server key their master was made with. */
  countSessionsByKey(now: number): Promise<Map<number, number>>;
  /**
   * When a server key is retired: revokes every session whose master token was made with it and
   * deletes pending passcodes hashed with it (neither would verify any more).
   */
  revokeByKey(keyId: number, now: number, reason: string): Promise<{ sessions: number; passcodes: number }>;

  /** Appends audit events (in the caller's transaction when called on a Tx). */
  appendAudit(events: readonly AuditEvent[]): Promise<void>;
  /** Audit rows matching `query`, newest first, at most `query.limit`. */
  queryAudit(query: AuditQuery): Promise<AuditRecord[]>;

  /**
   * Adds one to each named counter atomically (creating it at 1, or starting it over at 1 when it
   * had expired at `now`), sets its expiry to at least `expiresAt`, and answers the counters after.
   * Every node on the database sees the same counts.
   */
  hitCounters(keys: readonly string[], now: number, expiresAt: number): Promise<CounterRecord[]>;
  /**
   * The counters (undefined where none, or expired at `now`), in the order asked. Inside a
   * transaction every key asked is locked until commit, whether or not it has a row (PostgreSQL: a
   * transaction-scoped advisory lock per key, then SELECT … ORDER BY key FOR UPDATE), so a decision
   * made on them, their absence included, holds against every other node's transaction on the same
   * counters.
   */
  readCounters(keys: readonly string[], now: number): Promise<Array<CounterRecord | undefined>>;
  /**
   * Raises the counter's `until` to at least `until` (and its expiry to at least that), creating it
   * with count 0 when there is none.
   */
  blockCounter(key: string, until: number): Promise<void>;
  /** Forgets the counters. */
  clearCounters(keys: readonly string[]): Promise<void>;

  // Second factors (src/services/factors.ts). Every row below goes with its user (cascade).
  /** The user's factor rows (any state), by factor name. */
  listFactors(userId: number): Promise<FactorRecord[]>;
  /** Inserts or replaces the user's row for `record.factor`. */
  putFactor(record: FactorRecord): Promise<void>;
  /** Deletes the user's row for the factor; false when none. */
  deleteFactor(userId: number, factor: string): Promise<boolean>;
  /**
   * Records `step` as the factor's last used step, only when it is greater than the one recorded
   * (atomically: two nodes racing the same code, one wins); false when it is not (a replay).
   */
  useFactorStep(userId: number, factor: string, step: number): Promise<boolean>;

  /** The sealed secret of that kind; inside a transaction the row is locked until commit. */
  getSecret(userId: number, kind: string): Promise<SealedSecretRecord | undefined>;
  /** Inserts or replaces the user's secret of `record.kind`. */
  putSecret(record: SealedSecretRecord): Promise<void>;
  deleteSecret(userId: number, kind: string): Promise<boolean>;
  /** Up to `limit` secrets sealed under `keyId` (for re-sealing before that key is retired). */
  listSecretsByKey(keyId: number, limit: number): Promise<SealedSecretRecord[]>;
  /**
   * Replaces a secret's ciphertext and key id only while it is still sealed under `fromKeyId`
   * (a concurrent re-enrolment wins); false when nothing was changed.
   */
  resealSecret(userId: number, kind: string, fromKeyId: number, record: SealedSecretRecord): Promise<boolean>;

  /**
   * The passcode of a self-service recovery (recovery.request), kept apart from the login passcode
   * so that asking for one (which needs only an email) cannot void a login in progress. Same
   * semantics as the passcode methods above; inside a transaction `get` locks the row.
   */
  putRecoveryPasscode(passcode: PasscodeRecord): Promise<void>;
  getRecoveryPasscode(userId: number): Promise<PasscodeRecord | undefined>;
  deleteRecoveryPasscode(userId: number): Promise<void>;
  setRecoveryPasscodeAttempts(userId: number, attempts: number): Promise<void>;

  /** Replaces the user's recovery codes (keyed hashes) with these; none: deletes them all. */
  putRecoveryCodes(userId: number, hashes: readonly Buffer[], now: number): Promise<void>;
  /** Deletes the code with this hash, once: true for the one call that found it. */
  useRecoveryCode(userId: number, hash: Buffer): Promise<boolean>;
  /** How many unused recovery codes the user has. */
  countRecoveryCodes(userId: number): Promise<number>;

  /** Records (or refreshes) a running node and the key it signs with. */
  recordNode(node: NodeRecord): Promise<void>;
  /** Nodes seen at or after `since`, by id. */
  listNodes(since: number): Promise<NodeRecord[]>;
  /** A node that stopped cleanly removes itself. */
  forgetNode(id: string): Promise<void>;

  // Known devices (src/services/device-service.ts). Every row below goes with its user (cascade).
  /** The user's devices (any state), by MAC. */
  listDevices(userId: number): Promise<DeviceRecord[]>;
  /** The user's device with this (normalized) MAC. */
  getDevice(userId: number, mac: string): Promise<DeviceRecord | undefined>;
  /**
   * A completed login: creates or refreshes the device (first seen, last seen, last address; a name
   * only where it has none) and the address group, atomically per row, and answers which of the
   * two the user had never logged in from (a registered device never used counts as new). Two
   * logins racing from the same new device or group: exactly one is told it is new.
   */
  recordDeviceLogin(login: DeviceLogin): Promise<DeviceNovelty>;
  /** Creates or marks the device registered (`name` replaces the name when given); answers the row. */
  registerDevice(userId: number, mac: string, name: string | null, at: number, by: string): Promise<DeviceRecord>;
  /** Sets the device's name; false when there is no such device. */
  renameDevice(userId: number, mac: string, name: string | null): Promise<boolean>;
  /** Forgets the device (registered or not); false when none. Its address groups stay known. */
  deleteDevice(userId: number, mac: string): Promise<boolean>;
}

/**
 * One second factor of one user (src/services/factors.ts). `confirmedAt` set: the factor counts.
 * `mustEnroll`: the user must enrol it again before anything else (lost-authenticator recovery).
 * `lastStep`: the last time step a proof was accepted in (TOTP replay refusal, ASVS 2.8.4).
 */
export interface FactorRecord {
  readonly userId: number;
  readonly factor: string;
  readonly confirmedAt: number | null;
  readonly mustEnroll: boolean;
  readonly lastStep: number;
  readonly createdAt: number;
}

/** A secret sealed by the SecretBox (src/keys/secret-box.ts) under server key `keyId`. */
export interface SealedSecretRecord {
  readonly userId: number;
  /** What it is: `totp`, `recovery-key`, `face`, … (also bound into the ciphertext). */
  readonly kind: string;
  readonly keyId: number;
  readonly sealed: Buffer;
  readonly updatedAt: number;
}

/** A running server as the others see it: which server key it makes new hashes with. */
export interface NodeRecord {
  /** Chosen by the node at start (host, pid and a random part); unique among running nodes. */
  readonly id: string;
  readonly currentKeyId: number;
  /** When the node last said so (it repeats every minute while running). */
  readonly seenAt: number;
}

/**
 * A device (a MAC, as the client asserts it [P-3.3]) an operator logged in from, or that was
 * registered for them. `firstSeenAt` null: registered, never used for a login yet.
 */
export interface DeviceRecord {
  readonly userId: number;
  /** Normalized (lower case, colons). */
  readonly mac: string;
  /** Given by an administrator or the operator, else the client's `device` description at first login. */
  readonly name: string | null;
  readonly firstSeenAt: number | null;
  readonly lastSeenAt: number | null;
  /** The address the server saw at the last login from it. */
  readonly lastIp: string | null;
  /** Set: registered (by an administrator, or by the operator's device recovery). */
  readonly registeredAt: number | null;
  /** Who registered it, as in the audit trail's `actor` (`admin:<email>`, `cli:<user>`, `recovery`). */
  readonly registeredBy: string | null;
}

export interface DeviceLogin {
  readonly userId: number;
  readonly mac: string;
  readonly ip: string;
  /** The address group (src/net/address-group.ts) the login came from: what "a new address" means. */
  readonly addressGroup: string;
  /** The client's device description, kept as the name of a device that has none. */
  readonly name: string | null;
  readonly at: number;
}

export interface DeviceNovelty {
  readonly newDevice: boolean;
  readonly newAddress: boolean;
}

/** The handle of one open transaction: its operations commit together or not at all. */
export type Tx = StoreOps;

export interface Store extends StoreOps {
  /** `sqlite` or `postgres`: for logs, metrics and the CLI; never for behaviour. */
  readonly backend: string;

  /**
   * Runs `fn` in one transaction: everything it does through `tx` commits together when it
   * resolves, or rolls back when it throws (the error is rethrown). Transactions of one process
   * run one at a time on SQLite and in parallel on PostgreSQL; `fn` must not call the Store itself
   * (only `tx`) and should do no slow work (hashing) inside.
   */
  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;

  /**
   * Registers a listener for committed changes (see StoreChange), this process's and, where the
   * backend can tell, other processes'. Returns the function that unregisters it.
   */
  onChange(listener: (change: StoreChange) => void): () => void;
  /**
   * Whether every change committed on the database so far has been (or is being) announced: false
   * while the backend cannot hear other processes (a lost notification connection). A cache must
   * not answer from memory while this is false.
   */
  readonly coherent: boolean;
  /**
   * Picks up changes a backend must poll for (SQLite: another process's commit) and announces them;
   * synchronous and cheap, called once before each batch of incoming requests. A no-op where
   * changes are pushed.
   */
  refresh(): void;

  /**
   * Deletes dead rows (see ExpiryPolicy): at most `policy.batch` per table, in one short
   * transaction, through indexes. Call again while any count equals the batch size. Expired
   * counters go too.
   */
  deleteExpired(now: number, policy: ExpiryPolicy): Promise<ExpiredCounts>;
  /**
   * Runs `fn` only if no other process on this database is running it under the same name now
   * (an advisory lock on PostgreSQL; the process itself on SQLite, whose writers are serialized
   * anyway): housekeeping runs on one node at a time. Answers undefined when another holds it.
   */
  exclusive<T>(name: string, fn: () => Promise<T>): Promise<T | undefined>;
  /** Throws when the database cannot answer a trivial query (readiness). */
  ping(): Promise<void>;
  /** The schema version the database is at. */
  schemaVersion(): Promise<number>;

  close(): Promise<void>;
}
