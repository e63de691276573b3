import type { Clock } from '../deps.js';
import type { Store, StoreOps, UserRecord } from '../store/store.js';
import { ServiceError } from '../errors.js';
import { normalizeEmail, normalizePhone } from '../primitives/normalize.js';
import { passwordPolicyError, type PasswordHasher } from '../primitives/passwords.js';

export const ROLES = ['user', 'admin'] as const;

/**
 * An administrative request that cannot be carried out as asked; nothing was changed. `kind` says
 * why (the wire answers E_INVALID, E_NOT_FOUND, E_CONFLICT; the CLI prints the message and exits 1).
 */
export class UserInputError extends ServiceError {
  override name = 'UserInputError';
  declare readonly kind: 'invalid' | 'not-found' | 'conflict';
  constructor(message: string, kind: 'invalid' | 'not-found' | 'conflict' = 'invalid') {
    super(kind, message);
  }
}

const EMAIL_RE = /^[^\s@]+@[^\s@]+$/;
const PHONE_RE = /^\+?[0-9]{4,20}$/;

/** Creates a user after checking every field and the password policy; stores only the password hash. */
export async function addUser(
  deps: { store: Store; hasher: PasswordHasher; clock: Clock; roles?: readonly string[] },
  input: { email: string; phone: string; role: string; password: string },
  /** Runs in the transaction that creates the user (the audit row commits with it). */
  inTransaction?: (tx: StoreOps, user: UserRecord) => Promise<void>,
): Promise<UserRecord> {
  const email = normalizeEmail(input.email);
  const phone = normalizePhone(input.phone);
  if (!EMAIL_RE.test(email) || email.length > 254) throw new UserInputError('email is not a valid address');
  if (!PHONE_RE.test(phone)) throw new UserInputError('phone must be 4 to 20 digits, optionally starting with +');
  checkRole(input.role, deps.roles);
  const policy = passwordPolicyError(input.password, { email });
  if (policy) throw new UserInputError(policy);
  const passwordHash = await deps.hasher.hash(input.password);
  return deps.store.transaction(async (tx) => {
    const user = await tx.createUser({ email, phone, role: input.role, passwordHash, createdAt: deps.clock() });
    await inTransaction?.(tx, user);
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
export async function requireUser(store: StoreOps, email: string): Promise<UserRecord> {
  const user = await store.findUserByEmail(normalizeEmail(email));
  if (!user) throw new UserInputError(`no user with email ${normalizeEmail(email)}`, 'not-found');
  return user;
}

// The changes below take the account as found (requireUser): the caller looks it up once, inside
// the transaction that makes the change and audits it.

/** Disables the account and ends its sessions at once: a disabled operator holds no live token. */
export async function disableUser(tx: StoreOps, now: number, user: UserRecord): Promise<{ user: UserRecord; sessionsRevoked: number }> {
  if (user.disabled) throw new UserInputError(`${user.email} is already disabled`, 'conflict');
  await tx.setUserDisabled(user.id, true);
  await tx.deletePasscode(user.id);
  const sessionsRevoked = await tx.revokeUserSessions(user.id, now, 'account-disabled');
  return { user: { ...user, disabled: true }, sessionsRevoked };
}

/** Enables the account again; sessions ended by disabling stay ended (the operator logs in anew). */
export async function enableUser(tx: StoreOps, user: UserRecord): Promise<UserRecord> {
  if (!user.disabled) throw new UserInputError(`${user.email} is not disabled`, 'conflict');
  await tx.setUserDisabled(user.id, false);
  return { ...user, disabled: false };
}

export async function setUserRole(tx: StoreOps, roles: readonly string[] | undefined, user: UserRecord, role: string): Promise<UserRecord> {
  checkRole(role, roles);
  await tx.setUserRole(user.id, role);
  return { ...user, role };
}

/**
 * Sets a new password (policy checked) and ends every session and the pending passcode: whoever
 * knew the old password, or holds a token obtained with it, is out (ASVS V2.1.x, V3.3.3). The
 * change runs in `commit`'s transaction, which finds the account again (it may have moved while
 * the password was hashing) and audits.
 */
export async function resetPassword(
  deps: { store: Store; hasher: PasswordHasher; clock: Clock },
  email: string,
  password: string,
  /** Runs in the transaction that changes the password (the audit row commits with it). */
  inTransaction?: (tx: StoreOps, user: UserRecord, sessionsRevoked: number) => Promise<void>,
): Promise<{ user: UserRecord; sessionsRevoked: number }> {
  const { store, hasher, clock } = deps;
  const before = await requireUser(store, email);
  const policy = passwordPolicyError(password, { email: before.email });
  if (policy) throw new UserInputError(policy);
  const passwordHash = await hasher.hash(password);
  return store.transaction(async (tx) => {
    const user = await requireUser(tx, email);
    await tx.setPasswordHash(user.id, passwordHash);
    await tx.deletePasscode(user.id);
    const sessionsRevoked = await tx.revokeUserSessions(user.id, clock(), 'password-changed');
    await inTransaction?.(tx, user, sessionsRevoked);
    return { user, sessionsRevoked };
  });
}

export async function deleteUser(tx: StoreOps, user: UserRecord): Promise<UserRecord> {
  await tx.deleteUser(user.id);
  return user;
}

/** What an operator may see of a user: never the password hash. */
export function describeUser(user: UserRecord): { id: number; email: string; phone: string; role: string; disabled: boolean; createdAt: string } {
  return { id: user.id, email: user.email, phone: user.phone, role: user.role, disabled: user.disabled, createdAt: new Date(user.createdAt).toISOString() };
}
