import t from 'tap';
import { parseFrame } from '../../src/codec/frame-decoder.js';
import { encodeFrame, encodeJsonFrames } from '../../src/codec/frame-encoder.js';
import { responseJson } from '../../src/codec/response-json.js';

// The authorized answer's own serialiser must give JSON.stringify's text byte for byte, and leave
// every other shape to JSON.stringify.

const user = { email: 'ops@example.com', role: 'user' };

t.test('an authorized answer serialises exactly as JSON.stringify does', async (t) => {
  const cases: Array<Record<string, unknown>> = [
    { id: '4', code: 3, status: 'authorized', user, expiresAt: 1795309200000 },
    { code: 3, status: 'authorized', user, expiresAt: 1795309200000 },
    { id: 'q"\\\u2028😀\u0001', code: 3, status: 'authorized', user: { email: 'é"x@example.com', role: 'r\n' }, expiresAt: 0 },
    { id: 'x', code: 3, status: 'authorized', user, expiresAt: -0 },
  ];
  cases.forEach((c, i) => t.equal(responseJson(c), JSON.stringify(c), `case ${i}`));
});

t.test('any other shape is JSON.stringify, so nothing is dropped or reordered', async (t) => {
  const cases: Array<Record<string, unknown>> = [
    { id: '4', code: 3, status: 'authorized', user, expiresAt: 1, extra: true },
    { code: 3, id: '4', status: 'authorized', user, expiresAt: 1 },
    { id: '4', code: 3, status: 'authorized', user: { ...user, scope: 'full' }, expiresAt: 1 },
    { id: '4', code: 3, status: 'authorized', user: { role: 'user', email: 'a' }, expiresAt: 1 },
    { id: '4', code: 3, status: 'authorized', user, expiresAt: Number.NaN },
    { id: undefined, code: 3, status: 'authorized', user, expiresAt: 1 },
    { id: '4', code: 3, status: 'renew', token: 't', user, expiresAt: 1, renewableUntil: 2 },
    { id: '4', code: 3, status: 'unauthorized' },
    { status: 'error', error: 'E_SCHEMA', message: 'm' },
  ];
  cases.forEach((c, i) => t.equal(responseJson(c), JSON.stringify(c), `case ${i}`));
  const inherited = Object.assign(Object.create({ toJSON: () => 'x' }) as object, { code: 3, status: 'authorized', user, expiresAt: 1 });
  t.equal(responseJson(inherited as Record<string, unknown>), JSON.stringify(inherited), 'an object that is not plain');
});

t.test('encodeJsonFrames frames several texts as encodeFrame frames each', async (t) => {
  const messages = [{ a: 1 }, { b: 'é😀' }, { c: [1, 2, 3] }];
  const texts = [...messages.map((m) => JSON.stringify(m)), 'ignored'];
  t.same(encodeJsonFrames(texts, 3), Buffer.concat(messages.map((m) => encodeFrame(m))));
  t.equal(encodeJsonFrames(texts, 0).length, 0);
});

t.test('parseFrame reads ASCII and UTF-8 payloads alike, and still refuses bad UTF-8', async (t) => {
  t.same(parseFrame(Buffer.from('{"a":"b"}')), { ok: true, value: { a: 'b' } });
  t.same(parseFrame(Buffer.from('{"a":"é😀"}')), { ok: true, value: { a: 'é😀' } });
  t.match(parseFrame(Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x22, 0x7d])), { ok: false, error: { code: 'E_FRAME_INVALID_UTF8' } });
  t.match(parseFrame(Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xe9, 0x22, 0x7d])), { ok: false, error: { code: 'E_FRAME_INVALID_UTF8' } }, 'a latin1 byte is not UTF-8');
});
