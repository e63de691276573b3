/**
 * A response as JSON text. The one answer sent millions of times a day (`token.check`
 * `authorized`, [P-4.4]) goes through a serialiser written for its shape; anything else, or
 * anything that is not exactly that shape (another field, another order, a value of another type),
 * through JSON.stringify. Both give the same text byte for byte (test/codec/response-json.test.ts).
 */
export function responseJson(res: Record<string, unknown>): string {
  if (res.status === 'authorized') {
    const text = authorizedJson(res);
    if (text !== undefined) return text;
  }
  return JSON.stringify(res);
}

// The keys in the order the dispatcher's envelope and the token service put them.
const WITH_ID = ['id', 'code', 'status', 'user', 'expiresAt'] as const;
const WITHOUT_ID = ['code', 'status', 'user', 'expiresAt'] as const;
const USER = ['email', 'role'] as const;

/** Own enumerable keys exactly `keys`, in order, on a plain object; allocates nothing. */
function hasKeys(o: object, keys: readonly string[]): boolean {
  if (Object.getPrototypeOf(o) !== Object.prototype) return false;
  let i = 0;
  for (const k in o) if (k !== keys[i++]) return false;
  return i === keys.length;
}

function authorizedJson(res: Record<string, unknown>): string | undefined {
  const { id, code, user, expiresAt } = res;
  if (!hasKeys(res, id === undefined ? WITHOUT_ID : WITH_ID)) return undefined;
  if ((id !== undefined && typeof id !== 'string') || !Number.isInteger(code) || !Number.isFinite(expiresAt)) return undefined;
  if (typeof user !== 'object' || user === null || !hasKeys(user, USER)) return undefined;
  const { email, role } = user as Record<string, unknown>;
  if (typeof email !== 'string' || typeof role !== 'string') return undefined;
  // JSON.stringify of a string is its quoted, escaped form: the same text as inside an object.
  const head = id === undefined ? '{' : `{"id":${JSON.stringify(id)},`;
  return `${head}"code":${code as number},"status":"authorized","user":{"email":${JSON.stringify(email)},"role":${JSON.stringify(role)}},"expiresAt":${expiresAt as number}}`;
}
