/**
 * A hand-written check a request can pass instead of its compiled schema validator, for the one
 * command that runs millions of times a day (`token.check`): a few comparisons and character loops
 * where ajv runs its generated code and three regular expressions. It is conservative: it accepts
 * only requests the schema accepts (test/protocol/quick-validators.test.ts holds it to that on
 * edge cases and random requests), and the dispatcher runs the schema validator on whatever it
 * does not accept, so refusals and their messages are the schema's. It is used only while the
 * schema says exactly what it was written for (`quickValidator` compares); a changed schema turns it
 * off rather than letting it disagree.
 */
export type QuickValidator = (message: Record<string, unknown>, id: string | undefined) => boolean;

// What the token.check request schema and the common definitions it uses say, minus prose.
const TOKEN_CHECK_REQUEST = {
  type: 'object',
  additionalProperties: false,
  required: ['code', 'token', 'mac', 'request'],
  properties: {
    code: { type: 'integer', const: 3 },
    id: { $ref: 'common.json#/definitions/id' },
    token: { $ref: 'common.json#/definitions/token' },
    mac: { $ref: 'common.json#/definitions/mac' },
    request: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.:/-]+$' },
    data: {},
  },
};
const COMMON = {
  // requestId() is exactly this definition (test/protocol/envelope.test.ts).
  id: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[^\\u0000-\\u001F\\u007F-\\u009F\\uD800-\\uDFFF]+$' },
  token: { type: 'string', minLength: 1, maxLength: 256 },
  mac: { type: 'string', pattern: '^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$' },
};
const PROSE = new Set(['$schema', '$id', 'title', 'description', 'examples', 'tsType', '$comment', 'definitions']);

/** The schema without its prose, keys sorted, as text: what two schemas are compared on. */
function essence(value: unknown): string {
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    if (v === null || typeof v !== 'object') return v;
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) if (!PROSE.has(k)) out[k] = strip((v as Record<string, unknown>)[k]);
    return out;
  };
  return JSON.stringify(strip(value));
}

/**
 * The quick validator for `command`'s request schema `schema` (with `common`, the shared
 * definitions), or undefined when there is none for it or the schemas are not the ones it knows.
 */
export function quickValidator(command: string, schema: unknown, common: unknown): QuickValidator | undefined {
  if (command !== 'token.check') return undefined;
  const defs = (common as { definitions?: Record<string, unknown> } | undefined)?.definitions ?? {};
  const same =
    essence(schema) === essence(TOKEN_CHECK_REQUEST) &&
    essence(defs.id) === essence(COMMON.id) &&
    essence(defs.token) === essence(COMMON.token) &&
    essence(defs.mac) === essence(COMMON.mac);
  return same ? tokenCheckRequest : undefined;
}

function tokenCheckRequest(m: Record<string, unknown>, id: string | undefined): boolean {
  // additionalProperties: false. A parsed JSON object has only own, enumerable keys.
  for (const k in m) {
    if (k !== 'code' && k !== 'id' && k !== 'token' && k !== 'mac' && k !== 'request' && k !== 'data') return false;
  }
  if (m.code !== 3) return false;
  // The dispatcher's requestId(m.id): undefined for an id that is not valid.
  if (m.id !== undefined && id === undefined) return false;
  const { token, mac, request } = m;
  // Lengths in UTF-16 units: at most 256 units is at most 256 code points, at least 1 is at least 1.
  if (typeof token !== 'string' || token.length < 1 || token.length > 256) return false;
  if (typeof mac !== 'string' || !isMac(mac)) return false;
  return typeof request === 'string' && request.length >= 1 && request.length <= 128 && isRequestName(request);
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** ^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$ */
function isMac(s: string): boolean {
  if (s.length !== 17) return false;
  for (let i = 0; i < 17; i++) {
    const c = s.charCodeAt(i);
    if (i % 3 === 2 ? c !== 0x3a && c !== 0x2d : !isHex(c)) return false;
  }
  return true;
}

/** ^[A-Za-z0-9_.:/-]+$ (the length is checked apart). */
function isRequestName(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ok =
      (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x5f || c === 0x2e || c === 0x3a || c === 0x2f || c === 0x2d;
    if (!ok) return false;
  }
  return true;
}
