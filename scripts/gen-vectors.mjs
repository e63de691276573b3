// Writes protocol/vectors/decoder.json and exchanges.json from the readable definitions below.
// The JSON files are the contract that other languages read; this script is only how they are
// kept correct by hand (hex typed by hand is where vectors go wrong). `--check` exits 1 when the
// committed files differ from what this script produces (run by the test suite).
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = path.join(root, 'protocol', 'vectors');

const hex = (buf) => Buffer.from(buf).toString('hex');
const header = (n) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
/** One frame as hex, header and payload separated by a space for people reading the vector. */
function frame(payload) {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : Buffer.isBuffer(payload) ? payload : Buffer.from(JSON.stringify(payload), 'utf8');
  return `${hex(header(body.length))} ${hex(body)}`;
}
const stream = (...parts) => parts.join(' ');
const raw = (...bytes) => hex(Buffer.from(bytes));
/** A JSON object padded with trailing spaces to exactly n bytes. */
function padded(obj, n) {
  const s = JSON.stringify(obj);
  if (s.length > n) throw new Error('padding target too small');
  return s + ' '.repeat(n - s.length);
}

const DEFAULT_MAX = 65536;

const decoder = [
  { name: 'one frame', rule: 'P-1.1', bytes: frame({ code: 0 }), results: [{ object: { code: 0 } }] },
  {
    name: 'two frames back to back',
    rule: 'P-1.1',
    bytes: stream(frame({ code: 0, id: 'a' }), frame({ code: 0, id: 'b' })),
    results: [{ object: { code: 0, id: 'a' } }, { object: { code: 0, id: 'b' } }],
  },
  {
    name: 'the length is big-endian: a 256-byte payload',
    rule: 'P-1.1',
    // Read little-endian, 00 01 00 00 would announce 65,536 bytes and the decoder would wait.
    bytes: frame(padded({ code: 0, id: 'big-endian' }, 256)),
    results: [{ object: { code: 0, id: 'big-endian' } }],
  },
  { name: 'half a length prefix waits for more', rule: 'P-1.1', bytes: raw(0, 0), results: [], incomplete: true },
  {
    name: 'a length prefix and part of the payload wait for more',
    rule: 'P-1.1',
    bytes: `${hex(header(10))} ${hex(Buffer.from('{"code"'))}`,
    results: [],
    incomplete: true,
  },
  {
    name: 'a whole frame then part of the next',
    rule: 'P-1.1',
    bytes: stream(frame({ code: 0 }), hex(header(10)).slice(0, 4)),
    results: [{ object: { code: 0 } }],
    incomplete: true,
  },
  {
    name: 'multi-byte UTF-8 inside a string',
    rule: 'P-1.1',
    bytes: frame({ code: 0, id: 'é-€-😀' }),
    results: [{ object: { code: 0, id: 'é-€-😀' } }],
  },
  {
    name: 'whitespace around the object is allowed',
    rule: 'P-1.4',
    bytes: frame(' \n\t{"code":0}\r\n '),
    results: [{ object: { code: 0 } }],
  },
  // Escapes that are valid JSON (RFC 8259 §7) and valid UTF-8: the frame decodes; whether the
  // request is acceptable is the schema's question [P-2.3], not the decoder's.
  {
    name: 'a NUL escape inside a string decodes',
    rule: 'P-1.4',
    bytes: frame('{"code":0,"id":"a\\u0000b"}'),
    results: [{ object: { code: 0, id: 'a\u0000b' } }],
  },
  {
    name: 'a lone surrogate escape inside a string decodes',
    rule: 'P-1.4',
    bytes: frame('{"code":0,"id":"\\ud800"}'),
    results: [{ object: { code: 0, id: '\ud800' } }],
  },
  {
    name: 'a surrogate pair escape is one character',
    rule: 'P-1.4',
    bytes: frame('{"code":0,"id":"\\ud83d\\ude00"}'),
    results: [{ object: { code: 0, id: '😀' } }],
  },
  {
    name: 'a duplicate key: the last one wins',
    rule: 'P-2.1',
    bytes: frame('{"code":7,"id":"d","code":0}'),
    results: [{ object: { code: 0, id: 'd' } }],
  },
  { name: 'zero length', rule: 'P-1.2', bytes: hex(header(0)), results: [{ error: 'E_FRAME_EMPTY' }] },
  {
    name: 'zero length after a good frame',
    rule: 'P-1.2',
    bytes: stream(frame({ code: 0 }), hex(header(0))),
    results: [{ object: { code: 0 } }, { error: 'E_FRAME_EMPTY' }],
  },
  {
    name: 'decoding stops at the first error',
    rule: 'P-1.5',
    bytes: stream(hex(header(0)), frame({ code: 0 })),
    results: [{ error: 'E_FRAME_EMPTY' }],
  },
  {
    name: 'a payload of exactly the maximum',
    rule: 'P-1.3',
    maxFrameBytes: 64,
    bytes: frame(padded({ code: 0, id: 'exactly-64' }, 64)),
    results: [{ object: { code: 0, id: 'exactly-64' } }],
  },
  {
    name: 'one byte over the maximum is refused on the length prefix alone',
    rule: 'P-1.3',
    maxFrameBytes: 64,
    bytes: hex(header(65)),
    results: [{ error: 'E_FRAME_TOO_LARGE' }],
  },
  {
    name: 'the largest length a prefix can hold',
    rule: 'P-1.3',
    bytes: hex(header(0xffffffff)),
    results: [{ error: 'E_FRAME_TOO_LARGE' }],
  },
  ...[
    ['a lone continuation byte', [0x80]],
    ['an overlong encoding of "/"', [0xc0, 0xaf]],
    ['a UTF-16 surrogate encoded as UTF-8', [0xed, 0xa0, 0x80]],
    ['a truncated three-byte sequence', [0xe2, 0x82]],
    ['a code point above U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
    ['a byte that never occurs in UTF-8', [0xff]],
  ].map(([what, bytes]) => ({
    name: `invalid UTF-8: ${what}`,
    rule: 'P-1.4',
    bytes: frame(Buffer.concat([Buffer.from('{"code":0,"id":"'), Buffer.from(bytes), Buffer.from('"}')])),
    results: [{ error: 'E_FRAME_INVALID_UTF8' }],
  })),
  ...[
    ['a byte order mark', '\ufeff{"code":0}'],
    ['a truncated object', '{"code":0'],
    ['trailing bytes after the object', '{"code":0}x'],
    ['two objects in one frame', '{"code":0}{"code":0}'],
    ['NaN', '{"code":NaN}'],
    ['Infinity', '{"code":Infinity}'],
    ['single quotes', "{'code':0}"],
    ['a trailing comma', '{"code":0,}'],
    ['a comment', '{"code":0 /* hello */}'],
  ].map(([what, text]) => ({
    name: `invalid JSON: ${what}`,
    rule: 'P-1.4',
    bytes: frame(text),
    results: [{ error: 'E_FRAME_INVALID_JSON' }],
  })),
  ...[
    ['an array', '[{"code":0}]'],
    ['a string', '"code"'],
    ['a number', '0'],
    ['true', 'true'],
    ['null', 'null'],
  ].map(([what, text]) => ({
    name: `not an object: ${what}`,
    rule: 'P-1.4',
    bytes: frame(text),
    results: [{ error: 'E_FRAME_NOT_OBJECT' }],
  })),
];

const err = (error, more = {}) => ({ status: 'error', error, ...more });
/** A framing error: it carries neither id nor code, and the connection closes after it [P-1.5]. */
const framing = (error) => ({ match: err(error), absent: ['id', 'code'] });
const VERSION = JSON.parse(readFileSync(path.join(root, 'protocol', 'index.json'), 'utf8')).version;
const hello = (id) => ({ match: { id, code: 0, status: 'ok', protocol: 'hellwall', version: VERSION, maxFrameBytes: DEFAULT_MAX, maxInflight: 64 } });
const MAC = '00:1a:2b:3c:4d:5e';
const NOBODY = { email: 'nobody@example.invalid', password: 'correct horse battery staple', mac: MAC };
const TOKEN = `Awfer_hellwall_${'A'.repeat(43)}`;

const exchanges = [
  { name: 'hello', rule: 'P-4.1', send: frame({ code: 0, id: '1' }), expect: [hello('1')], then: 'open' },
  {
    name: 'a request without id gets a response without id',
    rule: 'P-2.4',
    send: frame({ code: 0 }),
    expect: [{ match: { code: 0, status: 'ok' }, absent: ['id'] }],
    then: 'open',
  },
  {
    name: 'pipelined requests are answered in order',
    rule: 'P-2.4',
    send: stream(frame({ code: 0, id: 'a' }), frame({ code: 3, id: 'b', token: TOKEN, mac: MAC, request: 'x' }), frame({ code: 0, id: 'c' })),
    expect: [hello('a'), { match: { id: 'b', code: 3, status: 'unauthorized' } }, hello('c')],
    then: 'open',
  },
  { name: 'empty frame', rule: 'P-1.2', send: hex(header(0)), expect: [framing('E_FRAME_EMPTY')], then: 'close' },
  {
    name: 'answers owed are sent before a framing error',
    rule: 'P-1.5',
    send: stream(frame({ code: 0, id: 'before' }), hex(header(0)), frame({ code: 0, id: 'after' })),
    expect: [hello('before'), framing('E_FRAME_EMPTY')],
    then: 'close',
  },
  {
    name: 'a frame over the maximum is refused on its length prefix',
    rule: 'P-1.3',
    send: hex(header(DEFAULT_MAX + 1)),
    expect: [framing('E_FRAME_TOO_LARGE')],
    then: 'close',
  },
  {
    name: 'invalid UTF-8',
    rule: 'P-1.4',
    send: frame(Buffer.from([0x7b, 0x22, 0xc0, 0xaf, 0x22, 0x3a, 0x30, 0x7d])),
    expect: [framing('E_FRAME_INVALID_UTF8')],
    then: 'close',
  },
  { name: 'invalid JSON', rule: 'P-1.4', send: frame('{"code":0'), expect: [framing('E_FRAME_INVALID_JSON')], then: 'close' },
  { name: 'NaN is not JSON', rule: 'P-1.4', send: frame('{"code":NaN}'), expect: [framing('E_FRAME_INVALID_JSON')], then: 'close' },
  { name: 'an array is not an object', rule: 'P-1.4', send: frame('[{"code":0}]'), expect: [framing('E_FRAME_NOT_OBJECT')], then: 'close' },
  { name: 'null is not an object', rule: 'P-1.4', send: frame('null'), expect: [framing('E_FRAME_NOT_OBJECT')], then: 'close' },
  {
    name: 'unknown command: code echoed, connection stays open',
    rule: 'P-2.2',
    send: frame({ code: 99, id: 'u' }),
    expect: [{ match: err('E_UNKNOWN_COMMAND', { id: 'u', code: 99 }) }],
    then: 'open',
  },
  {
    name: 'the largest code, 65535, is an unknown command and echoed',
    rule: 'P-2.2',
    send: frame({ code: 65535, id: 'max' }),
    expect: [{ match: err('E_UNKNOWN_COMMAND', { id: 'max', code: 65535 }) }],
    then: 'open',
  },
  {
    name: 'a negative code is out of range: E_SCHEMA, not echoed',
    rule: 'P-2.3',
    send: frame({ code: -1, id: 'n' }),
    expect: [{ match: err('E_SCHEMA', { id: 'n' }), absent: ['code'] }],
    then: 'open',
  },
  {
    name: 'a code of 65536 is out of range: E_SCHEMA, not echoed',
    rule: 'P-2.3',
    send: frame({ code: 65536, id: 'o' }),
    expect: [{ match: err('E_SCHEMA', { id: 'o' }), absent: ['code'] }],
    then: 'open',
  },
  {
    name: 'a code of 1e23 is not echoed',
    rule: 'P-2.3',
    send: frame('{"code":1e23,"id":"big"}'),
    expect: [{ match: err('E_SCHEMA', { id: 'big' }), absent: ['code'] }],
    then: 'open',
  },
  {
    name: 'a code of 2^64 is not echoed',
    rule: 'P-2.3',
    send: frame('{"code":18446744073709551616,"id":"u64"}'),
    expect: [{ match: err('E_SCHEMA', { id: 'u64' }), absent: ['code'] }],
    then: 'open',
  },
  {
    name: 'missing code',
    rule: 'P-2.3',
    send: frame({ id: 'm' }),
    expect: [{ match: err('E_SCHEMA', { id: 'm' }), absent: ['code'] }],
    then: 'open',
  },
  {
    name: 'code as a string is not echoed',
    rule: 'P-2.3',
    send: frame({ code: '0', id: 's' }),
    expect: [{ match: err('E_SCHEMA', { id: 's' }), absent: ['code'] }],
    then: 'open',
  },
  {
    name: 'code that is not an integer',
    rule: 'P-2.3',
    send: frame('{"code":1.5,"id":"f"}'),
    expect: [{ match: err('E_SCHEMA', { id: 'f' }), absent: ['code'] }],
    then: 'open',
  },
  {
    name: 'an empty id is invalid and not echoed',
    rule: 'P-2.3',
    send: frame({ code: 0, id: '' }),
    expect: [{ match: err('E_SCHEMA', { code: 0 }), absent: ['id'] }],
    then: 'open',
  },
  {
    name: 'an id of 65 characters is invalid and not echoed',
    rule: 'P-2.3',
    send: frame({ code: 0, id: 'x'.repeat(65) }),
    expect: [{ match: err('E_SCHEMA', { code: 0 }), absent: ['id'] }],
    then: 'open',
  },
  {
    name: 'an id of 64 characters is echoed',
    rule: 'P-2.1',
    send: frame({ code: 0, id: 'x'.repeat(64) }),
    expect: [hello('x'.repeat(64))],
    then: 'open',
  },
  {
    name: 'an id with a NUL is invalid and not echoed',
    rule: 'P-2.1',
    send: frame('{"code":0,"id":"a\\u0000b"}'),
    expect: [{ match: err('E_SCHEMA', { code: 0 }), absent: ['id'] }],
    then: 'open',
  },
  {
    name: 'an id with a lone surrogate is invalid and not echoed',
    rule: 'P-2.1',
    send: frame('{"code":0,"id":"\\ud800"}'),
    expect: [{ match: err('E_SCHEMA', { code: 0 }), absent: ['id'] }],
    then: 'open',
  },
  {
    name: 'an id with a lone surrogate is not echoed by an unknown command either',
    rule: 'P-2.4',
    send: frame('{"code":99,"id":"x\\udfff"}'),
    expect: [{ match: err('E_UNKNOWN_COMMAND', { code: 99 }), absent: ['id'] }],
    then: 'open',
  },
  {
    name: 'an id with a C1 control character is invalid and not echoed',
    rule: 'P-2.1',
    send: frame('{"code":0,"id":"\\u0085"}'),
    expect: [{ match: err('E_SCHEMA', { code: 0 }), absent: ['id'] }],
    then: 'open',
  },
  {
    name: 'an id of one surrogate pair is one character, and echoed',
    rule: 'P-2.1',
    send: frame('{"code":0,"id":"\\ud83d\\ude00"}'),
    expect: [hello('😀')],
    then: 'open',
  },
  {
    name: 'a duplicate key: the last code wins',
    rule: 'P-2.1',
    send: frame('{"code":99,"id":"d","code":0}'),
    expect: [hello('d')],
    then: 'open',
  },
  {
    name: 'a duplicate key: the last id wins',
    rule: 'P-2.1',
    send: frame('{"code":0,"id":"first","id":"second"}'),
    expect: [hello('second')],
    then: 'open',
  },
  {
    name: 'a numeric id is invalid',
    rule: 'P-2.3',
    send: frame({ code: 0, id: 7 }),
    expect: [{ match: err('E_SCHEMA', { code: 0 }), absent: ['id'] }],
    then: 'open',
  },
  {
    name: 'an unknown field',
    rule: 'P-2.1',
    send: frame({ code: 0, id: 'x', extra: true }),
    expect: [{ match: err('E_SCHEMA', { id: 'x', code: 0 }) }],
    then: 'open',
  },
  {
    name: 'passcode.request without mac',
    rule: 'P-2.3',
    send: frame({ code: 1, id: 'r', email: NOBODY.email, password: NOBODY.password }),
    expect: [{ match: err('E_SCHEMA', { id: 'r', code: 1 }) }],
    then: 'open',
  },
  {
    name: 'passcode.request with a malformed MAC',
    rule: 'P-3.3',
    send: frame({ code: 1, id: 'r', ...NOBODY, mac: '00:1a:2b:3c:4d' }),
    expect: [{ match: err('E_SCHEMA', { id: 'r', code: 1 }) }],
    then: 'open',
  },
  {
    name: 'passcode.request with a password over 128 characters',
    rule: 'P-2.3',
    send: frame({ code: 1, id: 'r', ...NOBODY, password: 'p'.repeat(129) }),
    expect: [{ match: err('E_SCHEMA', { id: 'r', code: 1 }) }],
    then: 'open',
  },
  {
    name: 'passcode.request with a mistyped field',
    rule: 'P-2.3',
    send: frame({ code: 1, id: 'r', ...NOBODY, email: 42 }),
    expect: [{ match: err('E_SCHEMA', { id: 'r', code: 1 }) }],
    then: 'open',
  },
  {
    name: 'passcode.request for an unknown account answers like any other',
    rule: 'P-4.2',
    send: frame({ code: 1, id: 'r', ...NOBODY, ip: '192.0.2.10' }),
    expect: [{ match: { id: 'r', code: 1, status: 'ok', expiresInSeconds: 180 } }],
    then: 'open',
  },
  {
    name: 'passcode.auth with a passcode of the wrong length',
    rule: 'P-2.3',
    send: frame({ code: 2, id: 'l', ...NOBODY, phone: '+1 555 0100', passcode: 'ABC12' }),
    expect: [{ match: err('E_SCHEMA', { id: 'l', code: 2 }) }],
    then: 'open',
  },
  {
    name: 'passcode.auth for an unknown account',
    rule: 'P-4.3',
    send: frame({ code: 2, id: 'l', ...NOBODY, phone: '+1 555 0100', passcode: 'K7M2QX' }),
    expect: [{ match: err('E_AUTH_FAILED', { id: 'l', code: 2 }) }],
    then: 'open',
  },
  {
    name: 'token.check without request',
    rule: 'P-2.3',
    send: frame({ code: 3, id: 'c', token: TOKEN, mac: MAC }),
    expect: [{ match: err('E_SCHEMA', { id: 'c', code: 3 }) }],
    then: 'open',
  },
  {
    name: 'token.check with an unknown token',
    rule: 'P-4.6',
    send: frame({ code: 3, id: 'c', token: TOKEN, mac: MAC, request: 'inventory.read', data: { item: 42 } }),
    expect: [{ match: { id: 'c', code: 3, status: 'unauthorized' }, absent: ['user', 'token', 'expiresAt'] }],
    then: 'open',
  },
  {
    name: 'token.check with a string that is not a token',
    rule: 'P-4.6',
    send: frame({ code: 3, id: 'c', token: 'not-a-token', mac: MAC, request: 'inventory.read' }),
    expect: [{ match: { id: 'c', code: 3, status: 'unauthorized' } }],
    then: 'open',
  },
  {
    name: 'session.list with an unknown token',
    rule: 'P-3.6',
    send: frame({ code: 6, id: 's', token: TOKEN, mac: MAC }),
    expect: [{ match: err('E_UNAUTHENTICATED', { id: 's', code: 6 }) }],
    then: 'open',
  },
  {
    name: 'session.list without token',
    rule: 'P-2.3',
    send: frame({ code: 6, id: 's', mac: MAC }),
    expect: [{ match: err('E_SCHEMA', { id: 's', code: 6 }) }],
    then: 'open',
  },
  {
    name: 'session.logout with a string that is not a token',
    rule: 'P-3.6',
    send: frame({ code: 4, id: 'o', token: 'not-a-token', mac: MAC }),
    expect: [{ match: err('E_UNAUTHENTICATED', { id: 'o', code: 4 }) }],
    then: 'open',
  },
  {
    name: 'session.logout_all with an unknown token',
    rule: 'P-3.6',
    send: frame({ code: 5, id: 'e', token: TOKEN, mac: MAC }),
    expect: [{ match: err('E_UNAUTHENTICATED', { id: 'e', code: 5 }) }],
    then: 'open',
  },
  {
    name: 'session.logout_all with a malformed MAC',
    rule: 'P-3.3',
    send: frame({ code: 5, id: 'e', token: TOKEN, mac: '00:1a:2b' }),
    expect: [{ match: err('E_SCHEMA', { id: 'e', code: 5 }) }],
    then: 'open',
  },
  {
    name: 'passcode.auth with a device description containing a control character',
    rule: 'P-4.3',
    send: frame({ code: 2, id: 'l', ...NOBODY, phone: '+1 555 0100', passcode: 'K7M2QX', device: 'laptop\n' }),
    expect: [{ match: err('E_SCHEMA', { id: 'l', code: 2 }) }],
    then: 'open',
  },
  {
    // Recovery carries the face like passcode.auth does (an operator with the factor proves it):
    // the field exists, and like every image it must be base64.
    name: 'recovery.password with a face that is not base64',
    rule: 'P-4.30',
    send: frame({ code: 26, id: 'f', email: NOBODY.email, passcode: 'K7M2QX', mac: MAC, newPassword: 'a brand new passphrase for spring', totp: '492039', face: 'not a JPEG!' }),
    expect: [{ match: err('E_SCHEMA', { id: 'f', code: 26 }) }],
    then: 'open',
  },
  {
    name: 'session.revoke with an unknown token',
    rule: 'P-3.6',
    send: frame({ code: 7, id: 'r', token: TOKEN, mac: MAC, sessionId: 1 }),
    expect: [{ match: err('E_UNAUTHENTICATED', { id: 'r', code: 7 }) }],
    then: 'open',
  },
  {
    name: 'session.revoke with a session id of 0',
    rule: 'P-2.3',
    send: frame({ code: 7, id: 'r', token: TOKEN, mac: MAC, sessionId: 0 }),
    expect: [{ match: err('E_SCHEMA', { id: 'r', code: 7 }) }],
    then: 'open',
  },
  {
    name: 'an admin command with an unknown token',
    rule: 'P-4.12',
    send: frame({ code: 9, id: 'a', token: TOKEN, mac: MAC }),
    expect: [{ match: err('E_UNAUTHENTICATED', { id: 'a', code: 9 }) }],
    then: 'open',
  },
  {
    name: 'an admin command with a string that is not a token',
    rule: 'P-4.12',
    send: frame({ code: 11, id: 'a', token: 'not-a-token', mac: MAC, email: 'nobody@example.invalid' }),
    expect: [{ match: err('E_UNAUTHENTICATED', { id: 'a', code: 11 }) }],
    then: 'open',
  },
  {
    name: 'admin.user.add with a role that is not a role name',
    rule: 'P-2.3',
    send: frame({ code: 8, id: 'a', token: TOKEN, mac: MAC, email: 'nobody@example.invalid', phone: '+1 555 0100', role: 'Root!', password: NOBODY.password }),
    expect: [{ match: err('E_SCHEMA', { id: 'a', code: 8 }) }],
    then: 'open',
  },
  {
    name: 'admin.audit.query with a page over 1000',
    rule: 'P-2.3',
    send: frame({ code: 20, id: 'a', token: TOKEN, mac: MAC, limit: 1001 }),
    expect: [{ match: err('E_SCHEMA', { id: 'a', code: 20 }) }],
    then: 'open',
  },
  {
    name: 'admin.user.show without email',
    rule: 'P-2.3',
    send: frame({ code: 10, id: 'a', token: TOKEN, mac: MAC }),
    expect: [{ match: err('E_SCHEMA', { id: 'a', code: 10 }) }],
    then: 'open',
  },
  {
    name: 'a schema error does not disturb the requests after it',
    rule: 'P-2.3',
    send: stream(frame({ code: 0, id: 'bad', extra: 1 }), frame({ code: 0, id: 'good' })),
    expect: [{ match: err('E_SCHEMA', { id: 'bad', code: 0 }) }, hello('good')],
    then: 'open',
  },
];

function document(comment, extra, vectors) {
  return `${JSON.stringify({ $comment: comment, ...extra, vectors }, null, 2)}\n`;
}

const files = {
  'decoder.json': document(
    'Frame-decoder conformance vectors; format in README.md. GENERATED by scripts/gen-vectors.mjs.',
    { maxFrameBytes: DEFAULT_MAX },
    decoder.map((v) => ({ name: v.name, rule: v.rule, maxFrameBytes: v.maxFrameBytes ?? DEFAULT_MAX, bytes: v.bytes, results: v.results, incomplete: v.incomplete ?? false })),
  ),
  'exchanges.json': document(
    'Server conformance vectors for a server with default limits; format in README.md. GENERATED by scripts/gen-vectors.mjs.',
    { server: { maxFrameBytes: DEFAULT_MAX, maxInflight: 64, passcodeTtlSeconds: 180 } },
    exchanges,
  ),
};

let stale = false;
for (const [file, text] of Object.entries(files)) {
  const target = path.join(dir, file);
  if (process.argv.includes('--check')) {
    let current = '';
    try {
      current = readFileSync(target, 'utf8');
    } catch {}
    if (current !== text) {
      console.error(`protocol/vectors/${file} is stale: run \`npm run gen:vectors\``);
      stale = true;
    }
  } else {
    writeFileSync(target, text);
    console.log(`wrote protocol/vectors/${file}`);
  }
}
if (stale) process.exit(1);
