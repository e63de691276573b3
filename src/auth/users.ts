import type { Clock } from '../deps.js';
import type { Store, UserRecord } from '../store/store.js';
import { normalizeEmail, normalizePhone } from './normalize.js';
import { passwordPolicyError, type PasswordHasher } from './passwords.js';

export const ROLES = ['user', 'admin'] as const;

export class UserInputError extends Error {
  override name = 'UserInputError';
}

const EMAIL_RE = /^[^\s@]+@[^\s@]+$/;
const PHONE_RE = /^\+?[0-9]{4,20}$/;

/** Creates a user after checking every field and the password policy; stores only the password hash. */
export async function addUser(
  deps: { store: Store; hasher: PasswordHasher; clock: Clock },
  input: { email: string; phone: string; role: string; password: string },
): Promise<UserRecord> {
  const email = normalizeEmail(input.email);
  const phone = normalizePhone(input.phone);
  if (!EMAIL_RE.test(email) || email.length > 254) throw new UserInputError('email is not a valid address');
  if (!PHONE_RE.test(phone)) throw new UserInputError('phone must be 4 to 20 digits, optionally starting with +');
  if (!(ROLES as readonly string[]).includes(input.role)) throw new UserInputError(`role must be one of ${ROLES.join(', ')}`);
  const policy = passwordPolicyError(input.password, { email });
  if (policy) throw new UserInputError(policy);
  const passwordHash = await deps.hasher.hash(input.password);
  return deps.store.createUser({ email, phone, role: input.role, passwordHash, createdAt: deps.clock() });
}
