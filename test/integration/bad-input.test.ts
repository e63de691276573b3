import tls from 'node:tls';
import t, { type Test } from 'tap';
import { FrameDecoder, HEADER_BYTES, parseFrame } from '../../src/codec/frame-decoder.js';
import { encodeFrame, frameBytes } from '../../src/codec/frame-encoder.js';
import type { AnyResponse, HellwallClient } from '../../src/client/client.js';
import { ALICE, MAC, startHarness, type Harness } from '../helpers/harness.js';
import type { LogLine } from '../helpers/log-sink.js';
import { header, within } from '../helpers/test-utils.js';

/*
 * Malformed input over real TLS. Framing errors [P-1.x] get one error frame and a closed
 * connection; per-request errors [P-2.x] get an error response and the connection stays usable.
 * After every case, other connections must still be served.
 */



/** Polls the log until a line satisfies `pred`, or gives up after `ms`. */
async function waitForLog(h: Harness, pred: (l: LogLine) => boolean, ms = 3000): Promise<LogLine | undefined> {
  const deadline = Date.now() + ms;
  for (;;) {
    const line = h.logs.lines.find(pred);
    if (line || Date.now() > deadline) return line;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A bare TLS socket: writes `bytes`, then collects every frame until the server closes. */
async function rawExchange(h: Harness, bytes: Buffer, ms = 3000): Promise<{ frames: AnyResponse[]; closed: boolean }> {
  const socket = tls.connect({
    host: '127.0.0.1',
    port: h.port,
    ca: h.ca,
    checkServerIdentity: (_host, cert) => tls.checkServerIdentity('127.0.0.1', cert),
  });
  const frames: AnyResponse[] = [];
  const decoder = new FrameDecoder(1 << 20);
  socket.on('data', (chunk: Buffer) =>
    decoder.push(chunk, (p) => {
      const parsed = parseFrame(p);
      frames.push((parsed.ok ? parsed.value : { status: 'undecodable' }) as AnyResponse);
    }),
  );
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('error', reject);
  });
  socket.write(bytes);
  const closed = (await within(new Promise<void>((r) => socket.once('close', () => r())), ms)) !== 'timeout';
  socket.destroy();
  return { frames, closed };
}

const h = await startHarness(t);
// A bystander connection that stays open through every bad case below, with a live session.
const bystander = await h.connect();
const { token } = await h.login(bystander);

/** Other connections are still served: the bystander's hello and token check, and a new connection. */
async function othersStillServed(t: Test): Promise<void> {
  const hello = await bystander.hello();
  t.equal(hello.status, 'ok', 'the bystander connection still gets hello');
  const check = await bystander.check({ token, mac: MAC, request: 'inventory.read' });
  t.equal(check.status, 'authorized', 'the bystander still gets token checks');
  const fresh = await h.connect();
  t.equal((await fresh.hello()).status, 'ok', 'a new connection is served');
  fresh.destroy();
}

/** Asserts a framing error answer: no id, status error, the code, schema-valid. */
function assertFramingError(t: Test, res: AnyResponse, code: string): void {
  t.equal(res.status, 'error', 'status error');
  t.equal(res.error, code, `error ${code}`);
  t.notOk('id' in res, 'no id: the request could not be read');
  t.notOk('code' in res, 'no command code either');
  t.equal(h.validate(res), null, 'matches the error schema');
}

const framingLines = (code: string): LogLine[] =>
  h.logs.find({ error: code }).filter((l) => l.msg === 'framing error; closing connection');

const FRAMING_CASES: ReadonlyArray<{ name: string; bytes: Buffer; code: string }> = [
  { name: 'an oversize length prefix (header only, no payload sent)', bytes: header(65_537), code: 'E_FRAME_TOO_LARGE' },
  { name: 'the largest possible length prefix', bytes: header(0xffffffff), code: 'E_FRAME_TOO_LARGE' },
  { name: 'a zero length prefix', bytes: header(0), code: 'E_FRAME_EMPTY' },
  { name: 'a payload with a 0xff byte', bytes: frameBytes(Buffer.from([0x7b, 0xff, 0x7d])), code: 'E_FRAME_INVALID_UTF8' },
  { name: 'a payload with an overlong encoding', bytes: frameBytes(Buffer.from('{"a":"\xc0\xaf"}', 'latin1')), code: 'E_FRAME_INVALID_UTF8' },
  { name: 'a payload with an encoded lone surrogate', bytes: frameBytes(Buffer.from('{"a":"\xed\xa0\x80"}', 'latin1')), code: 'E_FRAME_INVALID_UTF8' },
  { name: 'a payload that is not JSON', bytes: frameBytes('{"code":0,"id":"1"'), code: 'E_FRAME_INVALID_JSON' },
  { name: 'a payload of two JSON objects', bytes: frameBytes('{"code":0} {"code":0}'), code: 'E_FRAME_INVALID_JSON' },
  { name: 'a JSON array', bytes: frameBytes('[{"code":0,"id":"1"}]'), code: 'E_FRAME_NOT_OBJECT' },
  { name: 'a JSON number', bytes: frameBytes('42'), code: 'E_FRAME_NOT_OBJECT' },
  { name: 'JSON null', bytes: frameBytes('null'), code: 'E_FRAME_NOT_OBJECT' },
  { name: 'a JSON string', bytes: frameBytes('"{\\"code\\":0}"'), code: 'E_FRAME_NOT_OBJECT' },
];

for (const c of FRAMING_CASES) {
  t.test(`${c.name} is answered ${c.code}, logged, and the connection closed`, async (t) => {
    const logged = framingLines(c.code).length;
    const client = await h.connect();
    const res = await client.sendRaw(c.bytes);
    assertFramingError(t, res, c.code);
    t.equal(await within(client.closed, 3000), undefined, 'the server closed the connection');
    const lines = framingLines(c.code);
    t.equal(lines.length, logged + 1, 'the framing error is logged once');
    t.equal(lines.at(-1)?.level, 40, 'at warn level');
    t.equal(lines.at(-1)?.ip, '127.0.0.1', 'with the peer address');
    t.type(lines.at(-1)?.conn, 'number', 'and the connection number');
    await othersStillServed(t);
  });
}

t.test('requests before a framing error in the same write are answered first, then the error, then close', async (t) => {
  const bytes = Buffer.concat([
    encodeFrame({ code: 0, id: 'before-1' }),
    encodeFrame({ code: 3, id: 'before-2', token: 'garbage', mac: MAC, request: 'r' }),
    frameBytes('[]'),
    encodeFrame({ code: 0, id: 'after' }),
  ]);
  const { frames, closed } = await rawExchange(h, bytes);
  t.equal(frames.length, 3, 'two answers and one error, nothing for the frame after');
  t.equal(frames[0]?.id, 'before-1');
  t.equal(frames[0]?.status, 'ok');
  t.same(frames[1], { id: 'before-2', code: 3, status: 'unauthorized' });
  if (frames[2]) assertFramingError(t, frames[2], 'E_FRAME_NOT_OBJECT');
  t.ok(closed, 'the server closed the connection');
  await othersStillServed(t);
});

t.test('two framing errors in one write are answered with one error frame', async (t) => {
  const { frames, closed } = await rawExchange(h, Buffer.concat([encodeFrame({ code: 0, id: 'ok-first' }), frameBytes('{"code":'), header(0)]));
  t.equal(frames[0]?.id, 'ok-first', 'the request before is answered');
  if (frames[1]) assertFramingError(t, frames[1], 'E_FRAME_INVALID_JSON');
  t.equal(frames.length, 2, 'then exactly one error frame');
  t.ok(closed, 'the server closed the connection');
  await othersStillServed(t);
});

t.test('a truncated frame followed by a disconnect is logged as peer closed mid-frame', async (t) => {
  for (const how of ['end', 'destroy'] as const) {
    const client = await h.connect();
    const conns = new Set(h.logs.lines.map((l) => l.conn));
    // One whole request first, so we know the connection and that the server reads it.
    t.equal((await client.send({ code: 0, id: 'whole' })).status, 'ok');
    const conn = h.logs.lines.find((l) => l.conn !== undefined && !conns.has(l.conn))?.conn;
    t.type(conn, 'number', `${how}: the server logged the new connection`);
    await client.sendRaw(Buffer.concat([header(100), Buffer.from('{"code":0,')]), false);
    if (how === 'end') {
      client.socket.end();
    } else {
      await new Promise((r) => setTimeout(r, 100)); // let the partial frame leave before the reset
      client.destroy();
    }
    await within(client.closed, 3000);
    const line = await waitForLog(h, (l) => l.conn === conn && String(l.msg).startsWith('peer closed mid-frame'));
    t.ok(line, `${how}: the server logged the truncated frame`);
    // 10 payload bytes were dropped; counting the 4-byte header as well would be as right.
    t.ok([10, 14].includes(line?.bufferedBytes as number), `${how}: with the bytes it dropped (${String(line?.bufferedBytes)})`);
    t.equal(line?.level, 30, `${how}: at info level`);
  }
  await othersStillServed(t);
});

t.test('a length header alone followed by a disconnect is logged as peer closed mid-frame', async (t) => {
  const client = await h.connect();
  const conns = new Set(h.logs.lines.map((l) => l.conn));
  t.equal((await client.send({ code: 0 })).status, 'ok');
  const conn = h.logs.lines.find((l) => l.conn !== undefined && !conns.has(l.conn))?.conn;
  await client.sendRaw(header(100), false);
  client.socket.end();
  await within(client.closed, 3000);
  const line = await waitForLog(h, (l) => l.conn === conn && String(l.msg).startsWith('peer closed mid-frame'), 1000);
  t.ok(line, 'the server logged the truncated frame');
  await othersStillServed(t);
});

t.test('after a framing error the server releases the connection as soon as the client has gone', async (t) => {
  for (const pipelined of [false, true]) {
    const label = pipelined ? 'with a request pipelined after the bad frame' : 'with nothing after the bad frame';
    const client = await h.connect();
    const before = framingLines('E_FRAME_EMPTY').length;
    const answer = client.sendRaw(header(0));
    // A pipelining client has usually sent more before it learns of the error.
    if (pipelined) setImmediate(() => client.socket.write(encodeFrame({ code: 0, id: 'pipelined' })));
    assertFramingError(t, await answer, 'E_FRAME_EMPTY');
    t.equal(await within(client.closed, 3000), undefined, `${label}: the client side closed`);
    const conn = framingLines('E_FRAME_EMPTY')[before]?.conn;
    t.type(conn, 'number');
    const started = Date.now();
    // Far below the 5 s close timeout that a held socket would wait out, with room for a loaded CI.
    const line = await waitForLog(h, (l) => l.conn === conn && l.msg === 'connection closed', 3000);
    const took = Date.now() - started;
    t.ok(line !== undefined && took < 2500, `${label}: the server side closed well before the close timeout (${line ? `${took} ms` : 'not yet'})`);
  }
});

// --- Per-request errors: answered, and the connection stays open ------------------------------

interface RequestCase {
  readonly name: string;
  /** Sent as is (no id added); a string is sent as raw JSON text. */
  readonly send: Record<string, unknown> | string;
  readonly expect: { status: string; error?: string; id?: string; code?: number };
  readonly message?: RegExp;
}

const LONG = (n: number, c = 'a'): string => c.repeat(n);
const good = {
  request: { code: 1, email: ALICE.email, password: ALICE.password, mac: MAC },
  auth: { code: 2, email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode: 'ABC234', mac: MAC },
  check: { code: 3, token: 'Awfer_hellwall_' + 'A'.repeat(43), mac: MAC, request: 'r' },
};

const REQUEST_CASES: readonly RequestCase[] = [
  { name: 'a code given as a string', send: { code: '0', id: 'c1' }, expect: { status: 'error', error: 'E_SCHEMA', id: 'c1' }, message: /code must be integer/ },
  { name: 'a fractional code', send: { code: 1.5, id: 'c2' }, expect: { status: 'error', error: 'E_SCHEMA', id: 'c2' } },
  { name: 'a null code', send: { code: null, id: 'c3' }, expect: { status: 'error', error: 'E_SCHEMA', id: 'c3' } },
  { name: 'a missing code', send: { id: 'c4' }, expect: { status: 'error', error: 'E_SCHEMA', id: 'c4' }, message: /missing required field "code"/ },
  { name: 'an email given as a number', send: { ...good.request, id: 'e1', email: 42 }, expect: { status: 'error', error: 'E_SCHEMA', id: 'e1', code: 1 }, message: /^\/email / },
  { name: 'a MAC given as an array', send: { ...good.check, id: 'e2', mac: [MAC] }, expect: { status: 'error', error: 'E_SCHEMA', id: 'e2', code: 3 }, message: /^\/mac / },
  { name: 'a password given as null', send: { ...good.auth, id: 'e3', password: null }, expect: { status: 'error', error: 'E_SCHEMA', id: 'e3', code: 2 }, message: /^\/password / },
  { name: 'a missing passcode', send: { ...good.auth, id: 'm1', passcode: undefined }, expect: { status: 'error', error: 'E_SCHEMA', id: 'm1', code: 2 }, message: /missing required field "passcode"/ },
  { name: 'a token check with no token, MAC or request', send: { code: 3, id: 'm2' }, expect: { status: 'error', error: 'E_SCHEMA', id: 'm2', code: 3 }, message: /missing required field/ },
  { name: 'an extra field', send: { code: 0, id: 'x1', extra: true }, expect: { status: 'error', error: 'E_SCHEMA', id: 'x1', code: 0 }, message: /unknown field "extra"/ },
  { name: 'a __proto__ field', send: '{"code":0,"id":"x2","__proto__":{"admin":true}}', expect: { status: 'error', error: 'E_SCHEMA', id: 'x2', code: 0 }, message: /unknown field "__proto__"/ },
  {
    name: 'an extra field with a 600-character name',
    send: { code: 0, id: 'x3', [LONG(600, 'k')]: 1 },
    expect: { status: 'error', error: 'E_SCHEMA', id: 'x3', code: 0 },
  },
  { name: 'a 10,000-character email', send: { ...good.request, id: 'l1', email: LONG(10_000 - 12) + '@example.com' }, expect: { status: 'error', error: 'E_SCHEMA', id: 'l1', code: 1 }, message: /^\/email must NOT have more than 254 characters/ },
  { name: 'a 10,000-character password', send: { ...good.auth, id: 'l2', password: LONG(10_000) }, expect: { status: 'error', error: 'E_SCHEMA', id: 'l2', code: 2 }, message: /^\/password / },
  { name: 'a 300-character token', send: { ...good.check, id: 'l3', token: LONG(300) }, expect: { status: 'error', error: 'E_SCHEMA', id: 'l3', code: 3 }, message: /^\/token / },
  { name: 'a 60,000-character request name', send: { ...good.check, id: 'l4', request: LONG(60_000) }, expect: { status: 'error', error: 'E_SCHEMA', id: 'l4', code: 3 } },
  { name: 'an unknown command code', send: { code: 99, id: 'u1' }, expect: { status: 'error', error: 'E_UNKNOWN_COMMAND', id: 'u1', code: 99 } },
  { name: 'the largest command code (65535)', send: { code: 65535, id: 'u1b' }, expect: { status: 'error', error: 'E_UNKNOWN_COMMAND', id: 'u1b', code: 65535 } },
  // Issue 12: codes outside 0..65535 were echoed (as 1e+23 or 18446744073709552000 for the larger ones).
  { name: 'a negative command code', send: { code: -1, id: 'u2' }, expect: { status: 'error', error: 'E_SCHEMA', id: 'u2' }, message: /^\/code must be from 0 to 65535$/ },
  { name: 'a command code of 65536', send: { code: 65536, id: 'u2b' }, expect: { status: 'error', error: 'E_SCHEMA', id: 'u2b' } },
  { name: 'a command code beyond 32 bits', send: { code: 2 ** 40, id: 'u3' }, expect: { status: 'error', error: 'E_SCHEMA', id: 'u3' } },
  { name: 'a command code of 1e23', send: '{"code":1e23,"id":"u4"}', expect: { status: 'error', error: 'E_SCHEMA', id: 'u4' } },
  { name: 'a command code of 2^64 written out', send: '{"code":18446744073709551616,"id":"u5"}', expect: { status: 'error', error: 'E_SCHEMA', id: 'u5' } },
  { name: 'an id that is a number', send: { code: 0, id: 7 }, expect: { status: 'error', error: 'E_SCHEMA', code: 0 }, message: /^\/id / },
  { name: 'an id that is an object', send: { code: 99, id: { x: 1 } }, expect: { status: 'error', error: 'E_UNKNOWN_COMMAND', code: 99 } },
  { name: 'an empty id', send: { code: 0, id: '' }, expect: { status: 'error', error: 'E_SCHEMA', code: 0 } },
  { name: 'a 65-character id', send: { code: 0, id: LONG(65) }, expect: { status: 'error', error: 'E_SCHEMA', code: 0 } },
  { name: 'a 64-character id', send: { code: 0, id: LONG(64, 'i') }, expect: { status: 'ok', id: LONG(64, 'i'), code: 0 } },
  {
    name: 'an id of 40 emoji (valid: 40 characters)',
    send: { code: 0, id: '😀'.repeat(40) },
    expect: { status: 'ok', id: '😀'.repeat(40), code: 0 },
  },
  { name: 'a token check with a malformed token', send: { ...good.check, id: 't1', token: 'not a token' }, expect: { status: 'unauthorized', id: 't1', code: 3 } },
  { name: 'a token check with a well-formed unknown token', send: { ...good.check, id: 't2' }, expect: { status: 'unauthorized', id: 't2', code: 3 } },
  {
    name: 'a token check with deeply nested data',
    send: `{"code":3,"id":"t3","token":"nope","mac":"${MAC}","request":"r","data":${'['.repeat(20_000)}${']'.repeat(20_000)}}`,
    expect: { status: 'unauthorized', id: 't3', code: 3 },
  },
  // Issue 12: ids the schema refuses were echoed when they had a NUL or a lone surrogate.
  { name: 'an id with a NUL', send: '{"code":0,"id":"a\\u0000b"}', expect: { status: 'error', error: 'E_SCHEMA', code: 0 }, message: /^\/id must match pattern/ },
  { name: 'an id that is a lone surrogate', send: '{"code":0,"id":"\\ud800"}', expect: { status: 'error', error: 'E_SCHEMA', code: 0 }, message: /^\/id must match pattern/ },
  { name: 'an id ending in a lone high surrogate', send: '{"code":0,"id":"abc\\ud83d"}', expect: { status: 'error', error: 'E_SCHEMA', code: 0 } },
  { name: 'an id with a C1 control character', send: '{"code":0,"id":"\\u009b31m"}', expect: { status: 'error', error: 'E_SCHEMA', code: 0 } },
  { name: 'an id with a lone surrogate on an unknown command', send: '{"code":99,"id":"x\\udfff"}', expect: { status: 'error', error: 'E_UNKNOWN_COMMAND', code: 99 } },
  { name: 'an id with a NUL and a code out of range', send: '{"code":-5,"id":"\\u0000"}', expect: { status: 'error', error: 'E_SCHEMA' } },
  { name: 'an id of one surrogate pair written as escapes', send: '{"code":0,"id":"\\ud83d\\ude00"}', expect: { status: 'ok', id: '😀', code: 0 } },
  // [P-2.1] Duplicate keys: the last one wins, as JSON.parse reads them.
  { name: 'a duplicate code key (the last one wins)', send: '{"code":0,"id":"d1","code":77}', expect: { status: 'error', error: 'E_UNKNOWN_COMMAND', id: 'd1', code: 77 } },
  { name: 'a duplicate id key (the last one wins)', send: '{"code":0,"id":"first","id":"second"}', expect: { status: 'ok', id: 'second', code: 0 } },
  { name: 'a duplicate id whose last value is invalid', send: '{"code":0,"id":"good","id":"\\u0000"}', expect: { status: 'error', error: 'E_SCHEMA', code: 0 } },
  {
    name: 'a duplicate field whose last value is valid',
    send: `{"code":3,"id":"d2","token":"nope","mac":"not a mac","request":"r","mac":"${MAC}"}`,
    expect: { status: 'unauthorized', id: 'd2', code: 3 },
  },
  {
    name: 'a duplicate field whose last value is invalid',
    send: `{"code":3,"id":"d3","token":"nope","mac":"${MAC}","request":"r","mac":"not a mac"}`,
    expect: { status: 'error', error: 'E_SCHEMA', id: 'd3', code: 3 },
    message: /^\/mac /,
  },
];

t.test('per-request errors are answered and the connection stays open', async (t) => {
  const client: HellwallClient = await h.connect();
  let n = 0;
  for (const c of REQUEST_CASES) {
    await t.test(`${c.name} is answered ${c.expect.error ?? c.expect.status}`, async (t) => {
      const bytes = typeof c.send === 'string' ? frameBytes(c.send) : encodeFrame(c.send);
      t.ok(bytes.length - HEADER_BYTES <= h.app.config.maxFrameBytes, 'the frame is within the limit');
      const res = await client.sendRaw(bytes);
      t.equal(res.status, c.expect.status, 'status');
      if (c.expect.error) t.equal(res.error, c.expect.error, 'error code');
      if (c.expect.id !== undefined) t.equal(res.id, c.expect.id, 'the valid id is echoed');
      else t.notOk('id' in res, 'an id that could not be accepted is not echoed');
      if (c.expect.code !== undefined) t.equal(res.code, c.expect.code, 'the command code is echoed');
      else t.notOk('code' in res, 'no command code for a request without an integer code');
      if (c.message) t.match(res.message, c.message, 'the message names the problem');
      t.equal(h.validate(res), null, 'the response matches its schema');
      const after = await client.send({ code: 0, id: `after-${++n}` });
      t.same(
        { id: after.id, status: after.status },
        { id: `after-${n}`, status: 'ok' },
        'the same connection still answers a valid request',
      );
    });
  }
  t.equal(await within(client.closed, 50), 'timeout', 'the connection was never closed');
  await othersStillServed(t);
});

t.test('framing errors never happen for per-request errors: none were logged for that connection', async (t) => {
  const client = await h.connect();
  const conns = new Set(h.logs.lines.map((l) => l.conn));
  for (const c of REQUEST_CASES.slice(0, 5)) await client.sendRaw(typeof c.send === 'string' ? frameBytes(c.send) : encodeFrame(c.send));
  const conn = h.logs.lines.find((l) => l.conn !== undefined && !conns.has(l.conn))?.conn;
  t.type(conn, 'number');
  t.equal(h.logs.lines.filter((l) => l.conn === conn && l.level >= 40).length, 0, 'no warning or error logged');
});

t.test('with maxFrameBytes 1024, a 1024-byte frame is served and a 1025-byte frame closes the connection', async (t) => {
  const small = await startHarness(t, { config: { maxFrameBytes: 1024 } });
  const client = await small.connect();
  const hello = await client.hello();
  t.equal(hello.status === 'ok' && hello.maxFrameBytes, 1024, 'hello announces the limit');
  const pad = (n: number): Buffer => {
    const json = '{"code":0,"id":"pad"}';
    return frameBytes(json + ' '.repeat(n - json.length));
  };
  const exact = await client.sendRaw(pad(1024));
  t.same({ id: exact.id, status: exact.status }, { id: 'pad', status: 'ok' }, 'exactly at the limit is served');
  const long = await client.sendRaw(encodeFrame({ ...good.request, id: 'long', email: LONG(1100) + '@x' }));
  t.equal(long.error, 'E_FRAME_TOO_LARGE', 'an over-limit request is a framing error, not a schema error');
  assertFramingErrorOn(t, small, long, 'E_FRAME_TOO_LARGE');
  t.equal(await within(client.closed, 3000), undefined, 'the connection is closed');

  const second = await small.connect();
  const res = await second.sendRaw(header(1025)); // the header alone: refused before any payload
  assertFramingErrorOn(t, small, res, 'E_FRAME_TOO_LARGE');
  t.equal(await within(second.closed, 3000), undefined, 'closed');
  t.equal(small.logs.find({ error: 'E_FRAME_TOO_LARGE' }).length, 2, 'both are logged');
  const third = await small.connect();
  t.equal((await third.hello()).status, 'ok', 'other connections are still served');
});

function assertFramingErrorOn(t: Test, hh: Harness, res: AnyResponse, code: string): void {
  t.equal(res.status, 'error');
  t.equal(res.error, code);
  t.notOk('id' in res, 'no id');
  t.equal(hh.validate(res), null, 'matches the error schema');
}
