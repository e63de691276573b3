import t from 'tap';
import { requestId } from '../../src/protocol/envelope.js';
import { quickValidator } from '../../src/protocol/quick-validators.js';
import { loadProtocol } from '../../src/protocol/registry.js';
import { mulberry32 } from '../helpers/test-utils.js';

// The token.check quick validator may only accept what the compiled schema accepts (the dispatcher
// then skips the schema); it should accept the ordinary valid request. The judge is the server's
// own ajv validator.

const protocol = loadProtocol();
const entry = [...protocol.commands.values()].find((c) => c.name === 'token.check')!;
const schema = protocol.schemas.get(entry.request);
const common = protocol.schemas.get('common.json');
const quick = quickValidator('token.check', schema, common)!;
const ajv = (m: Record<string, unknown>): boolean => entry.validateRequest(m) === true;
const TOKEN = `Awfer_hellwall_${'a'.repeat(43)}`;
const BASE = { code: 3, id: '7', token: TOKEN, mac: '00:1a:2b:3c:4d:5e', request: 'orders.read', data: { item: 42 } };

t.test('exists for token.check on the schema as it is, and accepts the ordinary request', async (t) => {
  t.ok(quick, 'a quick validator for the current schema');
  t.ok(quick(BASE, requestId(BASE.id)));
  const { id: _id, data: _data, ...bare } = BASE;
  t.ok(quick(bare, undefined), 'without id and data');
  t.equal(quickValidator('hello', protocol.schemas.get('hello.request.json'), common), undefined, 'none for other commands');
});

t.test('turns itself off when the schema says something else', async (t) => {
  const s = schema as { properties: Record<string, unknown> };
  const changed = { ...s, properties: { ...s.properties, clientTime: { type: 'integer' } } };
  t.equal(quickValidator('token.check', changed, common), undefined, 'a new field');
  const request = { ...(s.properties.request as object), maxLength: 64 };
  t.equal(quickValidator('token.check', { ...s, properties: { ...s.properties, request } }, common), undefined, 'a tighter limit');
  const defs = (common as { definitions: Record<string, unknown> }).definitions;
  const mac = { ...(defs.mac as object), pattern: '^[0-9a-f]{12}$' };
  t.equal(quickValidator('token.check', schema, { ...common, definitions: { ...defs, mac } }), undefined, 'another MAC pattern');
});

const CASES: ReadonlyArray<[string, Record<string, unknown>]> = [
  ['an unknown field', { ...BASE, extra: 1 }],
  ['__proto__ as a key', JSON.parse(`{"code":3,"token":"${TOKEN}","mac":"00:1a:2b:3c:4d:5e","request":"r","__proto__":{}}`) as Record<string, unknown>],
  ['no token', { code: 3, mac: BASE.mac, request: 'r' }],
  ['an empty token', { ...BASE, token: '' }],
  ['a token of 256', { ...BASE, token: 'x'.repeat(256) }],
  ['a token of 257', { ...BASE, token: 'x'.repeat(257) }],
  ['a token of 200 emoji', { ...BASE, token: '😀'.repeat(200) }],
  ['a number token', { ...BASE, token: 5 }],
  ['a MAC with dashes', { ...BASE, mac: '00-1A-2b-3C-4d-5E' }],
  ['a MAC with mixed separators', { ...BASE, mac: '00-1a:2b-3c:4d-5e' }],
  ['a MAC too short', { ...BASE, mac: '00:1a:2b:3c:4d:5' }],
  ['a MAC with a trailing newline', { ...BASE, mac: '00:1a:2b:3c:4d:5e\n' }],
  ['a MAC with a g', { ...BASE, mac: '00:1a:2b:3c:4d:5g' }],
  ['a MAC with dots', { ...BASE, mac: '00.1a.2b.3c.4d.5e' }],
  ['no MAC', { code: 3, token: TOKEN, request: 'r' }],
  ['a request of 128', { ...BASE, request: 'r'.repeat(128) }],
  ['a request of 129', { ...BASE, request: 'r'.repeat(129) }],
  ['an empty request', { ...BASE, request: '' }],
  ['a request with a space', { ...BASE, request: 'a b' }],
  ['a request with every allowed sign', { ...BASE, request: 'aZ09_.:/-' }],
  ['a request with a non-ASCII letter', { ...BASE, request: 'é' }],
  ['no request', { code: 3, token: TOKEN, mac: BASE.mac }],
  ['an id that is not valid', { ...BASE, id: 'a\u0000' }],
  ['an id of 65', { ...BASE, id: 'i'.repeat(65) }],
  ['a number id', { ...BASE, id: 7 }],
  ['data null', { ...BASE, data: null }],
  ['data a string', { ...BASE, data: 'x' }],
  ['code 3.0', { ...BASE, code: 3.0 }],
  ['code 4', { ...BASE, code: 4 }],
];

t.test('never accepts what the schema refuses: edge cases', async (t) => {
  for (const [name, m] of CASES) {
    const q = quick(m, requestId(m.id));
    if (q) t.ok(ajv(m), `${name}: accepted by both`);
    else t.pass(`${name}: left to the schema (which says ${ajv(m)})`);
  }
  t.ok(quick({ ...BASE, mac: '00-1A-2b-3C-4d-5E' }, '7'), 'and it does accept a valid MAC with dashes');
});

t.test('never accepts what the schema refuses: random mutations', async (t) => {
  const rand = mulberry32(1801);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const chars = ['a', 'F', '0', ':', '-', '.', '/', '_', ' ', '\n', 'é', '😀', '\u0000', 'g'];
  const mutate = (s: string): string => {
    const a = [...s];
    const n = 1 + Math.floor(rand() * 3);
    for (let i = 0; i < n; i++) {
      const at = Math.floor(rand() * (a.length + 1));
      const op = rand();
      if (op < 0.4) a.splice(at, 1, pick(chars));
      else if (op < 0.7) a.splice(at, 0, pick(chars));
      else a.splice(at, 1);
    }
    return a.join('');
  };
  let accepted = 0;
  let disagreements = 0;
  for (let i = 0; i < 20000; i++) {
    const m: Record<string, unknown> = { ...BASE };
    const field = pick(['token', 'mac', 'request', 'id'] as const);
    m[field] = mutate(String(m[field]));
    if (rand() < 0.1) delete m[pick(['token', 'mac', 'request', 'id', 'data'])];
    const q = quick(m, requestId(m.id));
    if (q) accepted++;
    if (q && !ajv(m)) disagreements++;
  }
  t.equal(disagreements, 0, 'no request the schema refuses was accepted');
  t.ok(accepted > 1000, `and many valid ones were (${accepted})`);
});
