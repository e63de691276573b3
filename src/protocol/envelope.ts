/**
 * The two envelope fields every request may carry [P-2.1], checked before the request's own schema
 * so that an answer never echoes something no client type can hold [P-2.4]. Each check is exactly
 * its definition in protocol/schemas (a test compares them on every edge case and on random
 * strings), hand-written because it runs on every request: no allocation, no regular expression.
 */

/** The largest command code [P-2.1]: codes are 16-bit, so every language's integer type holds one. */
export const MAX_COMMAND_CODE = 65535;

/** The longest id, in characters (code points): common.json#/definitions/id `maxLength`. */
export const MAX_ID_CHARS = 64;

/**
 * `raw` when it is a valid command code (an integer from 0 to 65535: error.response.json `code`),
 * else undefined. A request without one answers E_SCHEMA with no `code`: echoing `1e+23` or
 * `18446744073709552000` back would break 64-bit clients.
 */
export function commandCode(raw: unknown): number | undefined {
  return typeof raw === 'number' && Number.isInteger(raw) && raw >= 0 && raw <= MAX_COMMAND_CODE ? raw : undefined;
}

/**
 * `raw` when it is a valid request id (common.json#/definitions/id): a string of 1 to 64 code
 * points, none a control character (U+0000–U+001F, U+007F–U+009F) or a lone surrogate. Else
 * undefined, and the answer carries no id.
 */
export function requestId(raw: unknown): string | undefined {
  // 64 code points take at most 128 UTF-16 units: longer strings are refused without a look.
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > 2 * MAX_ID_CHARS) return undefined;
  let chars = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) return undefined;
    if (c >= 0xd800 && c <= 0xdfff) {
      // Only a high surrogate followed by a low one is a character (one code point).
      if (c > 0xdbff) return undefined;
      const next = raw.charCodeAt(i + 1);
      if (!(next >= 0xdc00 && next <= 0xdfff)) return undefined;
      i++;
    }
    if (++chars > MAX_ID_CHARS) return undefined;
  }
  return raw;
}
