import type { Clock } from '../deps.js';
import type { Store, UserRecord } from '../store/store.js';
import { normalizeEmail, normalizePhone } from './normalize.js';
import { passwordPolicyError, type PasswordHasher } from './passwords.js';

export const ROLES = ['user', 'admin'] as const;

/**
 * An administrative request that cannot be carried out as asked; nothing was changed. `kind` says
 * why, for the protocol's error code (E_INVALID, E_NOT_FOUND, E_CONFLICT); the CLI prints the
 * message and exits 1.
 */
export class UserInputError extends Error {
  override name = 'UserInputError';
  readonly kind: 'invalid' | 'not-found' | 'conflict';
  constructor(message: string, kind: 'invalid' | 'not-found' | 'conflict' = 'invalid') {
    super(message);
    this.kind = kind;
  }
}

const EMAIL_RE = /^[^\s@]+@[^\s@]+$/;
const PHONE_RE = /^\+?[0-9]{4,20}$/;

/** Creates a user after checking every field and the password policy; stores only the password hash. */
export async function addUser(
  deps: { store: Store; hasher: PasswordHasher; clock: Clock; roles?: readonly string[] },
  input: { email: string; phone: string; role: string; password: string },
  /** Runs in the transaction that creates the user (the audit row commits with it). */
  inTransaction?: (user: UserRecord) => void,
): Promise<UserRecord> {
  const email = normalizeEmail(input.email);
  const phone = normalizePhone(input.phone);
  if (!EMAIL_RE.test(email) || email.length > 254) throw new UserInputError('email is not a valid address');
  if (!PHONE_RE.test(phone)) throw new UserInputError('phone must be 4 to 20 digits, optionally starting with +');
  checkRole(input.role, deps.roles);
  const policy = passwordPolicyError(input.password, { email });
  if (policy) throw new UserInputError(policy);
  const passwordHash = await deps.hasher.hash(input.password);
  return deps.store.transaction(() => {
    const user = deps.store.createUser({ email, phone, role: input.role, passwordHash, createdAt: deps.clock() });
    inTransaction?.(user);
    return user;
  });
}

/**
 * Roles are extensible: the authorization policy may declare more than `user` and `admin`, and a
 * user may then be given any role it knows [P-4.7].
 */
function checkRole(role: string, known: readonly string[] = ROLES): void {
  const roles = [...new Set([...ROLES, ...known])];
  if (!roles.includes(role)) throw new UserInputError(`role must be one of ${roles.join(', ')}`);
}

/** The user with this email, or a UserInputError naming it (the CLI exits 1 with the message). */
export function requireUser(store: Store, email: string): UserRecord {
  const user = store.findUserByEmail(normalizeEmail(email));
  if (!user) throw new UserInputError(`no user with email ${normalizeEmail(email)}`, 'not-found');
  return user;
}

// The changes below take the account as found (requireUser): the caller looks it up once, inside
// the transaction that makes the change and audits it.

/** Disables the account and ends its sessions at once: a disabled operator holds no live token. */
export function disableUser(deps: { store: Store; clock: Clock }, user: UserRecord): { user: UserRecord; sessionsRevoked: number } {
  const { store, clock } = deps;
  if (user.disabled) throw new UserInputError(`${user.email} is already disabled`, 'conflict');
  const sessionsRevoked = store.transaction(() => {
    store.setUserDisabled(user.id, true);
    store.deletePasscode(user.id);
    return store.revokeUserSessions(user.id, clock(), 'account-disabled');
  });
  return { user: { ...user, disabled: true }, sessionsRevoked };
}

/** Enables the account again; sessions ended by disabling stay ended (the operator logs in anew). */
export function enableUser(deps: { store: Store }, user: UserRecord): UserRecord {
  if (!user.disabled) throw new UserInputError(`${user.email} is not disabled`, 'conflict');
  deps.store.setUserDisabled(user.id, false);
  return { ...user, disabled: false };
}

export function setUserRole(deps: { store: Store; roles?: readonly string[] }, user: UserRecord, role: string): UserRecord {
  checkRole(role, deps.roles);
  deps.store.setUserRole(user.id, role);
  return { ...user, role };
}

/**
 * Sets a new password (policy checked) and ends every session and the pending passcode: whoever
 * knew the old password, or holds a token obtained with it, is out (ASVS V2.1.x, V3.3.3).
 */
export async function resetPassword(
  deps: { store: Store; hasher: PasswordHasher; clock: Clock },
  user: UserRecord,
  password: string,
  /** Runs in the transaction that changes the password (the audit row commits with it). */
  inTransaction?: (sessionsRevoked: number) => void,
): Promise<{ user: UserRecord; sessionsRevoked: number }> {
  const { store, hasher, clock } = deps;
  const policy = passwordPolicyError(password, { email: user.email });
  if (policy) throw new UserInputError(policy);
  const passwordHash = await hasher.hash(password);
  const sessionsRevoked = store.transaction(() => {
    store.setPasswordHash(user.id, passwordHash);
    store.deletePasscode(user.id);
    const n = store.revokeUserSessions(user.id, clock(), 'password-changed');
    inTransaction?.(n);
    return n;
  });
  return { user, sessionsRevoked };
}

export function deleteUser(deps: { store: Store }, user: UserRecord): UserRecord {
  deps.store.deleteUser(user.id);
  return user;
}

/** What an operator may see of a user: never the password hash. */
export function describeUser(user: UserRecord): { id: number; email: string; phone: string; role: string; disabled: boolean; createdAt: string } {
  return { id: user.id, email: user.email, phone: user.phone, role: user.role, disabled: user.disabled, createdAt: new Date(user.createdAt).toISOString() };
}
