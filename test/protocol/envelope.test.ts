import t from 'tap';
import { commandCode, MAX_COMMAND_CODE, requestId } from '../../src/protocol/envelope.js';
import { loadProtocol } from '../../src/protocol/registry.js';
import { mulberry32 } from '../helpers/test-utils.js';

// The dispatcher's envelope checks (src/protocol/envelope.ts) must accept exactly what the schemas
// accept: an id or code the schema refuses must never be echoed [P-2.4], and one it accepts must be.
// The judge here is the server's own compiled validators, not a second hand-written rule.

const protocol = loadProtocol();
const hello = protocol.commands.get(0)!.validateRequest;
const schemaAcceptsId = (id: unknown): boolean => hello({ code: 0, id }) === true;
const schemaAcceptsCode = (code: unknown): boolean => protocol.validateError({ status: 'error', error: 'E_SCHEMA', message: 'm', code }) === true;

const EMOJI = '😀';
const ID_CASES: ReadonlyArray<[string, unknown, boolean]> = [
  ['one character', 'a', true],
  ['64 characters', 'i'.repeat(64), true],
  ['65 characters', 'i'.repeat(65), false],
  ['the empty string', '', false],
  ['64 emoji (128 UTF-16 units)', EMOJI.repeat(64), true],
  ['65 emoji', EMOJI.repeat(65), false],
  ['63 letters and an emoji', 'a'.repeat(63) + EMOJI, true],
  ['NUL', '\u0000', false],
  ['a NUL inside', 'a\u0000b', false],
  ['a tab', 'a\tb', false],
  ['a line feed', 'req\n', false],
  ['U+001F', '\u001f', false],
  ['DEL (U+007F)', 'a\u007f', false],
  ['a C1 control (U+0085)', '\u0085', false],
  ['U+009F', '\u009f', false],
  ['a no-break space (U+00A0)', '\u00a0', true],
  ['a line separator (U+2028)', 'a\u2028b', true],
  ['a byte order mark', '\ufeffx', true],
  ['U+FFFF', '\uffff', true],
  ['a lone high surrogate', '\ud800', false],
  ['a lone low surrogate', '\udc00', false],
  ['a high surrogate at the end', 'abc\ud83d', false],
  ['a low surrogate at the start', '\ude00abc', false],
  ['a pair in the wrong order', '\ude00\ud83d', false],
  ['two high surrogates', '\ud83d\ud83d', false],
  ['a pair', '\ud83d\ude00', true],
  ['a number', 7, false],
  ['null', null, false],
  ['an object', { x: 1 }, false],
  ['an array', ['a'], false],
  ['true', true, false],
];

t.test('requestId accepts exactly the ids common.json#/definitions/id accepts', async (t) => {
  for (const [name, id, valid] of ID_CASES) {
    t.equal(schemaAcceptsId(id), valid, `${name}: the schema ${valid ? 'accepts' : 'refuses'} it`);
    t.equal(requestId(id), valid ? id : undefined, `${name}: requestId agrees`);
  }
});

t.test('requestId agrees with the schema on random strings of controls, surrogates and astral characters (seeded)', async (t) => {
  const rng = mulberry32(0x1d5);
  const units = [0x00, 0x09, 0x1f, 0x20, 0x41, 0x7e, 0x7f, 0x80, 0x9f, 0xa0, 0x2028, 0xd800, 0xdbff, 0xdc00, 0xdfff, 0xfeff, 0xffff];
  const disagreements: string[] = [];
  for (let n = 0; n < 20_000; n++) {
    const length = Math.floor(rng() * 140);
    let id = '';
    for (let i = 0; i < length; i++) {
      const r = rng();
      // Mostly letters and whole pairs, so long valid ids are common too.
      id += r < 0.6 ? 'x' : r < 0.8 ? EMOJI : String.fromCharCode(units[Math.floor(rng() * units.length)]!);
    }
    if ((requestId(id) !== undefined) !== schemaAcceptsId(id)) disagreements.push(JSON.stringify(id));
  }
  t.same(disagreements.slice(0, 5), [], '20,000 random ids judged alike');
});

t.test('commandCode accepts exactly the codes the error schema allows: integers 0 to 65535', async (t) => {
  const cases: ReadonlyArray<[string, unknown, boolean]> = [
    ['0', 0, true],
    ['-0', -0, true],
    ['20', 20, true],
    ['65535', MAX_COMMAND_CODE, true],
    ['65536', 65536, false],
    ['-1', -1, false],
    ['2^31', 2 ** 31, false],
    ['2^53', 2 ** 53, false],
    ['2^64', 2 ** 64, false],
    ['1e23', 1e23, false],
    ['1e308', 1e308, false],
    ['1.5', 1.5, false],
    ['1e-7', 1e-7, false],
    ['"0"', '0', false],
    ['null', null, false],
    ['true', true, false],
  ];
  for (const [name, code, valid] of cases) {
    t.equal(schemaAcceptsCode(code), valid, `${name}: the schema ${valid ? 'allows' : 'refuses'} it`);
    t.equal(commandCode(code), valid ? code : undefined, `${name}: commandCode agrees`);
  }
  for (const [code] of protocol.commands) t.equal(commandCode(code), code, `command ${code} is a valid code`);
});

type Node = Record<string, unknown>;

/** Every integer-typed node in every schema, with where it is. */
function integers(): Array<{ where: string; node: Node }> {
  const out: Array<{ where: string; node: Node }> = [];
  const walk = (node: unknown, where: string): void => {
    if (Array.isArray(node)) return node.forEach((n, i) => walk(n, `${where}/${i}`));
    if (node === null || typeof node !== 'object') return;
    const n = node as Node;
    if (n.type === 'integer' || n.type === 'number' || (Array.isArray(n.type) && (n.type.includes('integer') || n.type.includes('number')))) out.push({ where, node: n });
    for (const [k, v] of Object.entries(n)) if (k !== 'examples') walk(v, `${where}/${k}`);
  };
  for (const [file, schema] of protocol.schemas) walk(schema, file);
  return out;
}

t.test('every integer in every schema is bounded, within what every language can hold exactly (±(2^53-1))', async (t) => {
  const found = integers();
  t.ok(found.length >= 40, `found the integers (${found.length})`);
  for (const { where, node } of found) {
    t.equal(node.type, 'integer', `${where} is an integer, not a number`);
    if (node.const !== undefined) {
      t.ok(Number.isSafeInteger(node.const), `${where}: its constant is a safe integer`);
      continue;
    }
    t.ok(Number.isSafeInteger(node.minimum) && Number.isSafeInteger(node.maximum), `${where} has a minimum and a maximum`);
    t.ok((node.minimum as number) >= -Number.MAX_SAFE_INTEGER && (node.maximum as number) <= Number.MAX_SAFE_INTEGER, `${where}: within ±(2^53-1)`);
  }
});

t.test('command codes are 16-bit: every request code, and the error response code, is 0 to 65535', async (t) => {
  for (const [code, command] of protocol.commands) {
    const schema = protocol.schemas.get(command.request) as { properties: { code: Node } };
    t.equal(schema.properties.code.const, code, `${command.name}: its request fixes code ${code}`);
    t.ok(code >= 0 && code <= MAX_COMMAND_CODE, `${command.name}: within range`);
  }
  const error = protocol.schemas.get('error.response.json') as { properties: { code: Node } };
  t.same([error.properties.code.minimum, error.properties.code.maximum], [0, MAX_COMMAND_CODE]);
});
