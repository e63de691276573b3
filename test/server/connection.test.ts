import { duplexPair, type Duplex } from 'node:stream';
import t, { type Test } from 'tap';
import { FrameDecoder, parseFrame } from '../../src/codec/frame-decoder.js';
import { encodeFrame, frameBytes } from '../../src/codec/frame-encoder.js';
import { createLogger } from '../../src/log.js';
import { BufferBudget } from '../../src/server/buffer-budget.js';
import { Connection, type ConnectionOptions } from '../../src/server/connection.js';
import type { DispatchFn, Response } from '../../src/server/dispatcher.js';
import { LogSink } from '../helpers/log-sink.js';
import { header, within } from '../helpers/test-utils.js';

type Msg = Record<string, unknown>;

interface Deferred {
  readonly promise: Promise<Response>;
  resolve(res: Response): void;
  reject(err: unknown): void;
}

function deferred(): Deferred {
  let resolve!: (res: Response) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<Response>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets streams, nextTicks and promise callbacks run. */
async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}


interface Rig {
  readonly conn: Connection;
  /** The server's side of the pair (what Connection owns). */
  readonly server: Duplex;
  /** The peer's side: the test writes requests here and reads responses. */
  readonly peer: Duplex;
  readonly logs: LogSink;
  /** Every message the dispatcher was given, in order. */
  readonly dispatched: Msg[];
  /** Every buffer the connection wrote, with what write() returned. */
  readonly writes: Array<{ bytes: Buffer; ok: boolean }>;
  /** Responses decoded from the peer side, in arrival order. */
  readonly responses: Msg[];
  /** Resolves when the peer side sees the end of the server's output. */
  readonly peerGotEnd: Promise<void>;
  send(...messages: Msg[]): void;
}

function rig(
  t: Test,
  dispatch: (msg: Msg) => Response | Promise<Response>,
  opts: {
    maxInflight?: number;
    maxFrameBytes?: number;
    closeTimeoutMs?: number;
    highWaterMark?: number;
    readPeer?: boolean;
    budget?: BufferBudget;
    onOverBudget?: ConnectionOptions['onOverBudget'];
  } = {},
): Rig {
  const [server, peer] = duplexPair(opts.highWaterMark === undefined ? {} : { highWaterMark: opts.highWaterMark });
  const logs = new LogSink();
  const log = createLogger('trace', logs);
  const dispatched: Msg[] = [];
  const writes: Array<{ bytes: Buffer; ok: boolean }> = [];
  const write = server.write.bind(server) as (chunk: Buffer) => boolean;
  server.write = ((chunk: Buffer) => {
    const ok = write(chunk);
    writes.push({ bytes: Buffer.from(chunk), ok });
    return ok;
  }) as typeof server.write;
  const fn: DispatchFn = (msg, ctx) => {
    t.equal(ctx.ip, '192.0.2.7', 'the dispatcher is given the connection’s address');
    dispatched.push(msg);
    return dispatch(msg);
  };
  const conn = new Connection(server, {
    dispatch: fn,
    log,
    ip: '192.0.2.7',
    maxFrameBytes: opts.maxFrameBytes ?? 1024,
    maxInflight: opts.maxInflight ?? 64,
    closeTimeoutMs: opts.closeTimeoutMs ?? 200,
    ...(opts.budget && { budget: opts.budget }),
    ...(opts.onOverBudget && { onOverBudget: opts.onOverBudget }),
  });
  const responses: Msg[] = [];
  const decoder = new FrameDecoder(1 << 20);
  const onData = (chunk: Buffer): void => {
    const err = decoder.push(chunk, (payload) => {
      const parsed = parseFrame(payload);
      responses.push(parsed.ok ? parsed.value : { undecodable: parsed.error.code });
    });
    if (err) responses.push({ undecodable: err.code });
  };
  const peerGotEnd = new Promise<void>((resolve) => peer.once('end', () => resolve()));
  if (opts.readPeer !== false) peer.on('data', onData);
  t.teardown(() => {
    server.destroy();
    peer.destroy();
  });
  return {
    conn,
    server,
    peer,
    logs,
    dispatched,
    writes,
    responses,
    peerGotEnd,
    send: (...messages) => void peer.write(Buffer.concat(messages.map(encodeFrame))),
  };
}

/** Counts the frames in a buffer the connection wrote. */
function framesIn(bytes: Buffer): number {
  let n = 0;
  new FrameDecoder(1 << 20).push(bytes, () => n++);
  return n;
}

const ok = (msg: Msg): Response => ({ id: msg.id, status: 'ok' });


t.test('responses come back in request order even when earlier requests resolve later', async (t) => {
  const pending = new Map<string, Deferred>();
  const r = rig(t, (msg) => {
    if (msg.sync) return ok(msg);
    const d = deferred();
    pending.set(msg.id as string, d);
    return d.promise;
  });
  r.send({ id: 'a' });
  r.send({ id: 'b' });
  r.send({ id: 'c' });
  r.send({ id: 'd', sync: true });
  await settle();
  t.same(r.dispatched.map((m) => m.id), ['a', 'b', 'c', 'd'], 'all four dispatched at once');
  pending.get('c')!.resolve({ id: 'c', status: 'ok' });
  pending.get('b')!.resolve({ id: 'b', status: 'ok' });
  await settle();
  t.equal(r.writes.length, 0, 'nothing is written while the first request is unanswered');
  t.equal(r.conn.pending, 4);
  pending.get('a')!.resolve({ id: 'a', status: 'ok' });
  await settle();
  t.same(r.responses.map((m) => m.id), ['a', 'b', 'c', 'd'], 'answered in request order');
  t.equal(r.writes.length, 1, 'the four ready answers leave in one write');
  t.equal(r.conn.pending, 0);
});

t.test('all responses produced from one incoming chunk are written with one write', async (t) => {
  const r = rig(t, ok);
  r.send(...Array.from({ length: 10 }, (_, i) => ({ id: `x${i}` })));
  await settle();
  t.equal(r.writes.length, 1, 'one write for one chunk');
  t.equal(framesIn(r.writes[0]!.bytes), 10, 'carrying all ten responses');
  r.send({ id: 'y0' }, { id: 'y1' }, { id: 'y2' });
  await settle();
  t.equal(r.writes.length, 2, 'the next chunk gets its own single write');
  t.equal(framesIn(r.writes[1]!.bytes), 3);
  t.same(r.responses.map((m) => m.id), [...Array.from({ length: 10 }, (_, i) => `x${i}`), 'y0', 'y1', 'y2']);
});

t.test('a framing error answers one error frame after the responses already owed, then ends the stream', async (t) => {
  const first = deferred();
  const r = rig(t, (msg) => (msg.id === 'owed' ? first.promise : ok(msg)));
  r.peer.write(
    Buffer.concat([encodeFrame({ id: 'owed' }), encodeFrame({ id: 'sync' }), frameBytes('{"id":'), encodeFrame({ id: 'after' })]),
  );
  await settle();
  t.same(r.dispatched.map((m) => m.id), ['owed', 'sync'], 'the frame after the bad one is never dispatched');
  t.equal(r.writes.length, 0, 'the error waits behind the answer still owed');
  first.resolve({ id: 'owed', status: 'ok' });
  await settle();
  t.same(r.responses, [
    { id: 'owed', status: 'ok' },
    { id: 'sync', status: 'ok' },
    { status: 'error', error: 'E_FRAME_INVALID_JSON', message: 'frame payload is not valid JSON' },
  ]);
  t.equal(r.writes.length, 1, 'owed answers and the error leave together');
  t.equal(await within(r.peerGotEnd, 1000), undefined, 'the server ended its side');
  const warn = r.logs.find({ error: 'E_FRAME_INVALID_JSON' });
  t.equal(warn.length, 1, 'the framing error is logged once');
  t.equal(warn[0]?.level, 40, 'at warn level');
  t.equal(warn[0]?.msg, 'framing error; closing connection');
  r.send({ id: 'late' });
  await settle();
  t.equal(r.dispatched.length, 2, 'nothing is read after a framing error');
});

t.test('two framing errors in one chunk still answer exactly one error frame', async (t) => {
  // A bad payload followed, in the same chunk, by a bad header: the payload error closes the
  // connection, so the header error must not produce a second error frame.
  for (const [name, tail] of [
    ['zero-length header', header(0)],
    ['oversize header', header(5000)],
  ] as const) {
    const r = rig(t, ok);
    r.peer.write(Buffer.concat([encodeFrame({ id: 'fine' }), frameBytes('not json'), tail]));
    await settle();
    await within(r.peerGotEnd, 1000);
    const errors = r.responses.filter((m) => m.status === 'error');
    t.equal(r.responses[0]?.id, 'fine', `${name}: the request before is answered`);
    t.equal(errors[0]?.error, 'E_FRAME_INVALID_JSON', `${name}: the first error is the one answered`);
    t.equal(errors.length, 1, `${name}: exactly one error frame`);
  }
});

t.test('a framing error from the decoder is answered after the frames before it in the same chunk', async (t) => {
  for (const [code, tail] of [
    ['E_FRAME_EMPTY', header(0)],
    ['E_FRAME_TOO_LARGE', header(1025)],
  ] as const) {
    const r = rig(t, ok, { maxFrameBytes: 1024 });
    r.peer.write(Buffer.concat([encodeFrame({ id: 'one' }), encodeFrame({ id: 'two' }), tail]));
    await settle();
    t.same(
      r.responses.map((m) => m.id ?? m.error),
      ['one', 'two', code],
      `${code}: answers in order, the error last`,
    );
    t.equal(await within(r.peerGotEnd, 1000), undefined, `${code}: stream ended`);
    t.equal(r.logs.find({ error: code }).length, 1, `${code}: logged`);
  }
});

t.test('reading pauses when maxInflight requests are unanswered and resumes as they complete', async (t) => {
  const pending: Deferred[] = [];
  const r = rig(
    t,
    () => {
      const d = deferred();
      pending.push(d);
      return d.promise;
    },
    { maxInflight: 3 },
  );
  for (let i = 0; i < 5; i++) r.send({ id: `q${i}` });
  await settle();
  t.equal(r.dispatched.length, 3, 'stops reading at three unanswered requests');
  t.ok(r.server.isPaused(), 'the stream is paused');
  await settle(10);
  t.equal(r.dispatched.length, 3, 'and stays stopped');
  pending[0]!.resolve({ id: 'q0', status: 'ok' });
  await settle();
  t.same(r.responses.map((m) => m.id), ['q0']);
  t.equal(r.dispatched.length, 4, 'one answer lets one more request in');
  t.ok(r.server.isPaused(), 'paused again at the limit');
  for (const [i, d] of pending.entries()) d.resolve({ id: `q${i}`, status: 'ok' });
  await settle();
  t.equal(r.dispatched.length, 5);
  const last = pending[4]!;
  last.resolve({ id: 'q4', status: 'ok' });
  await settle();
  t.same(r.responses.map((m) => m.id), ['q0', 'q1', 'q2', 'q3', 'q4'], 'all answered, in order');
  t.notOk(r.server.isPaused(), 'reading again once under the limit');
});

t.test('reading pauses while write() returns false and resumes on drain', async (t) => {
  const big = 'x'.repeat(200);
  const r = rig(t, (msg) => ({ id: msg.id, status: 'ok', big }), { highWaterMark: 64, readPeer: false });
  r.send({ id: 'w1' });
  await settle();
  t.equal(r.writes.length, 1);
  t.equal(r.writes[0]!.ok, false, 'the peer is not reading: write() returned false');
  r.send({ id: 'w2' });
  r.send({ id: 'w3' });
  await settle(10);
  t.same(r.dispatched.map((m) => m.id), ['w1'], 'no request is read while the peer is not reading');
  t.ok(r.server.isPaused());
  const got: Msg[] = [];
  const decoder = new FrameDecoder(1 << 20);
  r.peer.on('data', (chunk: Buffer) =>
    decoder.push(chunk, (p) => {
      const parsed = parseFrame(p);
      if (parsed.ok) got.push(parsed.value);
    }),
  );
  await settle(20);
  t.same(r.dispatched.map((m) => m.id), ['w1', 'w2', 'w3'], 'reading resumed after drain');
  t.same(got.map((m) => m.id), ['w1', 'w2', 'w3']);
});

t.test('a dispatch that throws or rejects yields E_INTERNAL and the connection keeps working', async (t) => {
  const r = rig(t, (msg) => {
    if (msg.boom === 'throw') throw new Error('kaboom: secret detail');
    if (msg.boom === 'reject') return Promise.reject(new Error('nope: secret detail'));
    return ok(msg);
  });
  r.send({ id: 't', boom: 'throw' }, { id: 'r', boom: 'reject' }, { id: 'fine' });
  await settle();
  t.equal(r.responses.length, 3);
  t.match(r.responses[0], { status: 'error', error: 'E_INTERNAL' });
  t.match(r.responses[1], { status: 'error', error: 'E_INTERNAL' });
  t.same(r.responses[2], { id: 'fine', status: 'ok' });
  t.notOk(JSON.stringify(r.responses).includes('secret'), 'the fault stays out of the response');
  t.equal(r.logs.lines.filter((l) => l.msg === 'dispatch threw' && l.level === 50).length, 1, 'the throw is logged as an error');
  t.equal(r.logs.lines.filter((l) => l.msg === 'dispatch rejected' && l.level === 50).length, 1, 'the rejection is logged as an error');
  r.send({ id: 'again' });
  await settle();
  t.same(r.responses[3], { id: 'again', status: 'ok' }, 'later requests are still served');
  t.notOk(r.server.writableEnded, 'the connection was not closed');
});

t.test('a peer that ends mid-frame is logged as "peer closed mid-frame"', async (t) => {
  const r = rig(t, ok);
  r.peer.write(Buffer.concat([encodeFrame({ id: 'whole' }), header(100), Buffer.from('0123456789')]));
  await settle();
  r.peer.end();
  t.equal(await within(r.conn.closed, 2000), undefined, 'the connection closes');
  t.same(r.responses.map((m) => m.id), ['whole'], 'the whole frame was answered');
  const lines = r.logs.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('peer closed mid-frame'));
  t.equal(lines.length, 1, 'logged once');
  // 10 payload bytes were dropped; counting the 4-byte header as well would be as right.
  t.ok([10, 14].includes(lines[0]?.bufferedBytes as number), `with the bytes dropped (${String(lines[0]?.bufferedBytes)})`);
});

t.test('a peer that ends right after a length header is logged as "peer closed mid-frame"', async (t) => {
  const r = rig(t, ok);
  r.peer.write(header(100));
  await settle();
  r.peer.end();
  t.equal(await within(r.conn.closed, 2000), undefined, 'the connection closes');
  const lines = r.logs.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('peer closed mid-frame'));
  t.equal(lines.length, 1, 'logged once');
});

t.test('a peer that half-closes after its requests still gets every answer, then the stream ends', async (t) => {
  const d = deferred();
  const r = rig(t, (msg) => (msg.id === 'slow' ? d.promise : ok(msg)));
  r.send({ id: 'slow' }, { id: 'quick' });
  r.peer.end();
  await settle();
  t.notOk(r.server.writableEnded, 'not ended while an answer is owed');
  d.resolve({ id: 'slow', status: 'ok' });
  t.equal(await within(r.peerGotEnd, 1000), undefined, 'then ended');
  t.same(r.responses.map((m) => m.id), ['slow', 'quick']);
  t.equal(await within(r.conn.closed, 1000), undefined, 'and closed');
  t.equal(r.logs.lines.filter((l) => String(l.msg).startsWith('peer closed')).length, 0, 'a clean close logs no drop');
});

t.test('after a framing error a peer that never closes is destroyed after closeTimeoutMs', async (t) => {
  const r = rig(t, ok, { closeTimeoutMs: 100 });
  r.peer.write(header(0));
  const started = Date.now();
  t.equal(await within(r.conn.closed, 2000), undefined, 'closed');
  t.ok(Date.now() - started >= 90, 'not before the timeout');
  t.ok(r.server.destroyed);
  t.same(r.responses.map((m) => m.error), ['E_FRAME_EMPTY']);
});

t.test('after a framing error a peer that closes at once releases the connection at once', async (t) => {
  const r = rig(t, ok, { closeTimeoutMs: 3000 });
  r.peer.write(frameBytes('[]'));
  r.send({ id: 'pipelined' }); // a pipelining peer has usually sent more before it sees the error
  await within(r.peerGotEnd, 1000);
  t.same(r.responses.map((m) => m.error), ['E_FRAME_NOT_OBJECT']);
  r.peer.end();
  const res = await within(r.conn.closed, 1000);
  t.equal(res, undefined, 'closed without waiting for closeTimeoutMs');
});

t.test('shutdown answers what was received, reads nothing more, then ends', async (t) => {
  const d = deferred();
  const r = rig(t, (msg) => (msg.id === 'in' ? d.promise : ok(msg)));
  r.send({ id: 'in' });
  await settle();
  r.conn.shutdown();
  r.send({ id: 'after-shutdown' });
  await settle();
  t.same(r.dispatched.map((m) => m.id), ['in']);
  d.resolve({ id: 'in', status: 'ok' });
  t.equal(await within(r.peerGotEnd, 1000), undefined, 'ended after the last answer');
  t.same(r.responses.map((m) => m.id), ['in']);
});

t.test('the in-flight limit holds within a single read of many requests', async (t) => {
  let pending = 0;
  let peak = 0;
  const r = rig(t, (msg) => {
    pending++;
    peak = Math.max(peak, pending);
    return new Promise<Response>((resolve) =>
      setTimeout(() => {
        pending--;
        resolve(ok(msg));
      }, 5),
    );
  }, { maxInflight: 4 });
  r.send(...Array.from({ length: 20 }, (_, i) => ({ id: `m${i}` })));
  for (let i = 0; i < 100 && r.responses.length < 20; i++) await settle();
  for (let i = 0; i < 50 && r.responses.length < 20; i++) await new Promise((res) => setTimeout(res, 10));
  t.equal(peak, 4, 'never more than maxInflight requests were being worked on');
  t.same(r.responses.map((m) => m.id), Array.from({ length: 20 }, (_, i) => `m${i}`), 'all answered, in order');
});

t.test('a peer that half-closes while requests are held back by the limit still gets every answer', async (t) => {
  const r = rig(t, (msg) => new Promise<Response>((resolve) => setTimeout(() => resolve(ok(msg)), 5)), { maxInflight: 2 });
  r.send(...Array.from({ length: 9 }, (_, i) => ({ id: `h${i}` })));
  r.peer.end();
  t.equal(await within(r.peerGotEnd, 3000), undefined, 'the stream ends after the answers');
  t.same(r.responses.map((m) => m.id), Array.from({ length: 9 }, (_, i) => `h${i}`));
});

t.test('past a few refusals per connection, refusals are logged at debug and totalled at close', async (t) => {
  const { createDispatcher } = await import('../../src/server/dispatcher.js');
  const { loadProtocol } = await import('../../src/protocol/registry.js');
  const { REFUSALS_LOGGED } = await import('../../src/server/dispatcher.js');
  const protocol = loadProtocol();
  const dispatch = createDispatcher({} as never, protocol);
  const [server, peer] = duplexPair();
  const logs = new LogSink();
  const conn = new Connection(server, { dispatch, log: createLogger('info', logs), ip: '192.0.2.7', maxFrameBytes: 1024, maxInflight: 64 });
  peer.resume();
  peer.write(Buffer.concat(Array.from({ length: 50 }, () => frameBytes('{}'))));
  await settle();
  peer.end();
  await within(conn.closed, 2000);
  t.equal(logs.find({ msg: 'request refused' }).length, REFUSALS_LOGGED, 'only the first ones one by one at info');
  t.same(logs.find({ msg: 'requests refused on this connection' }).map((l) => l.refusals), [50], 'the total at close');
});

t.test('a partial frame the shared budget has no room for closes the connection after the answers owed, without a message [P-1.8]', async (t) => {
  const budget = new BufferBudget(1000);
  const other = rig(t, ok, { budget });
  other.peer.write(Buffer.concat([header(900), Buffer.from('{"id":')]));
  await settle();
  t.equal(budget.used, 900, 'another connection holds most of the budget');
  const refusals: number[] = [];
  const slow = deferred();
  const r = rig(t, (msg) => (msg.id === 'owed' ? slow.promise : ok(msg)), { budget, onOverBudget: (refusal) => refusals.push(refusal.bytes) });
  r.peer.write(Buffer.concat([encodeFrame({ id: 'owed' }), encodeFrame({ id: 'sync' }), header(200), Buffer.from('{"id":"too-much"')]));
  await settle();
  t.same(r.dispatched.map((m) => m.id), ['owed', 'sync'], 'the whole frames before it were taken');
  t.same(refusals, [200], 'the listener is told, with the size that did not fit');
  t.equal(budget.used, 900, 'nothing was reserved for the refused frame');
  t.notOk(r.server.writableEnded, 'the answer still owed holds the close');
  slow.resolve({ id: 'owed', status: 'ok' });
  t.equal(await within(r.peerGotEnd, 1000), undefined, 'then the server ends its side');
  t.same(r.responses.map((m) => m.id), ['owed', 'sync'], 'both answered, and no error frame: the client did nothing wrong');
  t.equal(r.logs.find({ msg: 'no room to buffer a partial frame; closing connection' }).length, 1, 'logged (at debug: the listener rate-limits the warning)');
  r.send({ id: 'late' });
  await settle();
  t.equal(r.dispatched.length, 2, 'nothing is read after the refusal');

  other.peer.write(Buffer.from('"held"}').subarray(0, 3));
  other.peer.end();
  t.equal(await within(other.conn.closed, 2000), undefined);
  t.equal(budget.used, 0, 'a connection that closes mid-frame gives its share back');
});

t.test('with a budget, frames that arrive whole are served however full the budget is', async (t) => {
  const budget = new BufferBudget(100);
  const hog = rig(t, ok, { budget });
  hog.peer.write(header(100));
  await settle();
  t.equal(budget.used, 100, 'the budget is full');
  const r = rig(t, ok, { budget });
  r.send({ id: 'small' }, { id: 'big', pad: 'x'.repeat(800) });
  await settle();
  t.same(r.responses.map((m) => m.id), ['small', 'big'], 'answered: they never needed buffering');
  t.notOk(r.server.writableEnded);
});
