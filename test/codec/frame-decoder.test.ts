import t from 'tap';
import { FrameDecoder, HEADER_BYTES, parseFrame, type DecodeFailure } from '../../src/codec/frame-decoder.js';
import { BufferBudget } from '../../src/server/buffer-budget.js';
import { encodeFrame, frameBytes } from '../../src/codec/frame-encoder.js';
import { mulberry32 } from '../helpers/test-utils.js';


const header = (len: number): Buffer => {
  const b = Buffer.alloc(HEADER_BYTES);
  b.writeUInt32BE(len, 0);
  return b;
};

/** Pushes every chunk; returns the payloads (copied) and every push's result. */
function feed(decoder: FrameDecoder, chunks: Buffer[]): { payloads: Buffer[]; results: Array<DecodeFailure | null> } {
  const payloads: Buffer[] = [];
  const results = chunks.map((c) => decoder.push(c, (p) => payloads.push(Buffer.from(p))));
  return { payloads, results };
}

const hex = (bufs: Buffer[]): string[] => bufs.map((b) => b.toString('hex'));

t.test('a frame fed one byte at a time is delivered once, on its last byte', async (t) => {
  const message = { code: 0, id: 'one-byte', note: 'héllo ☃ 😀' };
  const frame = encodeFrame(message);
  const d = new FrameDecoder(1024);
  const seen: Buffer[] = [];
  let deliveredAt = -1;
  for (let i = 0; i < frame.length; i++) {
    const err = d.push(frame.subarray(i, i + 1), (p) => {
      seen.push(Buffer.from(p));
      deliveredAt = i;
    });
    if (err) t.fail(`unexpected error at byte ${i}: ${err.code}`);
  }
  t.equal(seen.length, 1, 'exactly one payload');
  t.equal(deliveredAt, frame.length - 1, 'delivered when the last byte arrived, not before');
  t.same(JSON.parse(seen[0]!.toString('utf8')), message);
  t.equal(d.bufferedBytes, 0, 'nothing left buffered');
});

t.test('many frames in one chunk are all delivered, in order', async (t) => {
  const messages = Array.from({ length: 50 }, (_, i) => ({ code: i % 4, id: `m${i}`, pad: 'x'.repeat(i) }));
  const d = new FrameDecoder(1024);
  const { payloads, results } = feed(d, [Buffer.concat(messages.map(encodeFrame))]);
  t.same(results, [null]);
  t.same(payloads.map((p) => JSON.parse(p.toString('utf8'))), messages);
  t.equal(d.bufferedBytes, 0);
});

t.test('frames split at every possible boundary decode the same', async (t) => {
  const payloads = [Buffer.from('{"code":0}'), Buffer.from([0xe2, 0x98, 0x83]), Buffer.from('x'), Buffer.alloc(300, 0x61)];
  const stream = Buffer.concat(payloads.map((p) => frameBytes(p)));
  const expected = hex(payloads);
  let mismatches = 0;
  for (let i = 0; i <= stream.length; i++) {
    const got = feed(new FrameDecoder(1024), [stream.subarray(0, i), stream.subarray(i)]);
    if (JSON.stringify(hex(got.payloads)) !== JSON.stringify(expected) || got.results.some((r) => r !== null)) {
      mismatches++;
      t.fail(`split at ${i} decoded differently`);
    }
  }
  t.equal(mismatches, 0, `all ${stream.length + 1} single splits agree`);

  // Every pair of split points over a shorter stream (three chunks, some of them empty).
  const small = Buffer.concat([frameBytes('{"a":1}'), frameBytes('[]'), frameBytes('"é"')]);
  const smallExpected = JSON.stringify(['{"a":1}', '[]', '"é"']);
  let pairs = 0;
  for (let i = 0; i <= small.length; i++) {
    for (let j = i; j <= small.length; j++) {
      const got = feed(new FrameDecoder(64), [small.subarray(0, i), small.subarray(i, j), small.subarray(j)]);
      pairs++;
      if (JSON.stringify(got.payloads.map((p) => p.toString('utf8'))) !== smallExpected) {
        mismatches++;
        t.fail(`splits at ${i},${j} decoded differently`);
      }
    }
  }
  t.equal(mismatches, 0, `all ${pairs} double splits agree`);
});

t.test('a random sequence of frames in random chunks decodes exactly (seeded)', async (t) => {
  const SEED = 0x4e11;
  const rand = mulberry32(SEED);
  const int = (n: number): number => Math.floor(rand() * n);
  let bad = 0;
  for (let round = 0; round < 300; round++) {
    const max = 1 + int(512);
    const frames: Buffer[] = [];
    for (let n = int(20); n >= 0; n--) {
      const len = 1 + int(max); // 1..max inclusive: exercises the exact limit too
      frames.push(Buffer.from(Array.from({ length: len }, () => int(256))));
    }
    const stream = Buffer.concat(frames.map((f) => frameBytes(f)));
    const chunks: Buffer[] = [];
    for (let off = 0; off < stream.length; ) {
      const size = rand() < 0.05 ? 0 : 1 + int(rand() < 0.5 ? 8 : 700);
      chunks.push(stream.subarray(off, off + size));
      off += size;
    }
    const d = new FrameDecoder(max);
    const got = feed(d, chunks);
    if (
      got.results.some((r) => r !== null) ||
      got.payloads.length !== frames.length ||
      got.payloads.some((p, i) => !p.equals(frames[i]!)) ||
      d.bufferedBytes !== 0
    ) {
      bad++;
      t.fail(`seed ${SEED} round ${round}: ${frames.length} frames in ${chunks.length} chunks decoded wrongly`);
    }
  }
  t.equal(bad, 0, '300 rounds decoded exactly');
});

t.test('a zero length prefix is E_FRAME_EMPTY, after the frames before it were delivered', async (t) => {
  const d = new FrameDecoder(1024);
  const { payloads, results } = feed(d, [Buffer.concat([frameBytes('{"code":0}'), header(0), frameBytes('{"code":1}')])]);
  t.equal(results[0]?.code, 'E_FRAME_EMPTY');
  t.same(payloads.map(String), ['{"code":0}'], 'the frame before was delivered, the one after was not');
  t.equal(d.failed?.code, 'E_FRAME_EMPTY');
});

t.test('a length over the maximum is E_FRAME_TOO_LARGE as soon as the header arrives', async (t) => {
  for (const len of [1025, 65536, 0xffffffff]) {
    const d = new FrameDecoder(1024);
    const h = header(len);
    t.equal(d.push(h.subarray(0, 3), () => t.fail('no frame')), null, `${len}: three header bytes are not yet an error`);
    const err = d.push(h.subarray(3), () => t.fail('no frame'));
    t.equal(err?.code, 'E_FRAME_TOO_LARGE', `${len}: refused on the fourth header byte, before any payload`);
    t.equal(d.bufferedBytes, 0, `${len}: nothing buffered`);
  }
});

t.test('frames exactly at the maximum are accepted, one byte more is not', async (t) => {
  const d = new FrameDecoder(64);
  const exact = Buffer.alloc(64, 0x7a);
  const { payloads, results } = feed(d, [frameBytes(exact), frameBytes(exact)]);
  t.same(results, [null, null]);
  t.equal(payloads.length, 2);
  t.ok(payloads[0]!.equals(exact));
  t.equal(new FrameDecoder(64).push(header(65), () => {})?.code, 'E_FRAME_TOO_LARGE');
  t.equal(new FrameDecoder(1).push(frameBytes('x'), () => {}), null, 'a one-byte maximum admits one byte');
});

t.test('after a failure every push returns the same failure and delivers nothing', async (t) => {
  const d = new FrameDecoder(32);
  const first = d.push(Buffer.concat([header(10), Buffer.from('abc')]), () => {});
  t.equal(first, null);
  const failure = d.push(Buffer.concat([Buffer.from('defghij'), header(33)]), () => {});
  t.equal(failure?.code, 'E_FRAME_TOO_LARGE');
  let delivered = 0;
  for (const chunk of [frameBytes('{"code":0}'), header(0), Buffer.alloc(0), frameBytes('ok')]) {
    t.equal(d.push(chunk, () => delivered++), failure, 'the same failure object');
  }
  t.equal(delivered, 0, 'nothing delivered after the failure');
  t.equal(d.failed, failure);
  t.equal(d.bufferedBytes, 0, 'the buffer is dropped');
});

t.test('bufferedBytes reflects a partial frame', async (t) => {
  const d = new FrameDecoder(1024);
  const frame = frameBytes('{"code":0,"id":"partial"}');
  t.equal(d.bufferedBytes, 0, 'empty at the start');
  d.push(frame.subarray(0, 1), () => {});
  t.equal(d.bufferedBytes, 1, 'one header byte');
  d.push(frame.subarray(1, 3), () => {});
  t.equal(d.bufferedBytes, 3, 'three header bytes');
  d.push(frame.subarray(3, 4), () => {});
  t.ok(d.bufferedBytes > 0, 'a complete header with no payload yet is still a partial frame');
  const before = d.bufferedBytes;
  d.push(frame.subarray(4, 9), () => {});
  t.equal(d.bufferedBytes, before + 5, 'grows by the payload bytes received');
  d.push(frame.subarray(9, 10), () => {});
  t.equal(d.bufferedBytes, before + 6);
  let delivered = 0;
  d.push(Buffer.concat([frame.subarray(10), frame.subarray(0, 2)]), () => delivered++);
  t.equal(delivered, 1);
  t.equal(d.bufferedBytes, 2, 'only the next frame’s first bytes remain');
});

t.test('the decoder does not depend on the caller reusing its chunk', async (t) => {
  const d = new FrameDecoder(64);
  const chunk = Buffer.concat([frameBytes('first'), frameBytes('second').subarray(0, 7)]);
  const got: string[] = [];
  d.push(chunk, (p) => got.push(p.toString()));
  chunk.fill(0); // the caller (e.g. a socket pool) reuses its buffer
  d.push(frameBytes('second').subarray(7), (p) => got.push(p.toString()));
  t.same(got, ['first', 'second']);
});

t.test('parseFrame refuses invalid UTF-8', async (t) => {
  const cases: Array<[string, number[]]> = [
    ['a lone 0xff', [0x7b, 0xff, 0x7d]],
    ['an overlong slash 0xc0 0xaf', [0x7b, 0x22, 0xc0, 0xaf, 0x22, 0x3a, 0x31, 0x7d]],
    ['a lone surrogate 0xed 0xa0 0x80', [0x7b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x3a, 0x31, 0x7d]],
    ['a truncated sequence 0xe2 0x98', [0x7b, 0x22, 0xe2, 0x98, 0x22, 0x3a, 0x31, 0x7d]],
    ['a code point above U+10FFFF', [0x22, 0xf4, 0x90, 0x80, 0x80, 0x22]],
  ];
  for (const [name, bytes] of cases) {
    const res = parseFrame(Buffer.from(bytes));
    t.equal(res.ok ? 'ok' : res.error.code, 'E_FRAME_INVALID_UTF8', name);
  }
});

t.test('parseFrame refuses payloads that are not JSON', async (t) => {
  for (const text of ['{"code":0', 'code=0', '{} {}', "{'a':1}", '\ufeff{}', '{"a":01}', ' ']) {
    const res = parseFrame(Buffer.from(text));
    t.equal(res.ok ? 'ok' : res.error.code, 'E_FRAME_INVALID_JSON', JSON.stringify(text));
  }
});

t.test('parseFrame refuses JSON that is not an object', async (t) => {
  for (const text of ['[]', '[{"code":0}]', '"{}"', '42', '-1.5e3', 'null', 'true', 'false']) {
    const res = parseFrame(Buffer.from(text));
    t.equal(res.ok ? 'ok' : res.error.code, 'E_FRAME_NOT_OBJECT', text);
  }
});

t.test('parseFrame accepts an object and keeps __proto__ as a plain field', async (t) => {
  const res = parseFrame(Buffer.from(' {"code":0,"id":"é😀","__proto__":{"polluted":true}}\n'));
  t.equal(res.ok, true);
  if (!res.ok) return;
  t.equal(res.value.code, 0);
  t.equal(res.value.id, 'é😀');
  t.ok(Object.hasOwn(res.value, '__proto__'), '__proto__ is an own property');
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is untouched');
});

t.test('encodeFrame and frameBytes round-trip, with the length counted in bytes', async (t) => {
  const message = { code: 3, id: 'ü', s: 'naïve ☃ 😀 中文', n: [1, 2.5, null], o: { deep: true } };
  const frame = encodeFrame(message);
  const json = JSON.stringify(message);
  t.not(Buffer.byteLength(json), json.length, 'the sample has multi-byte characters');
  t.equal(frame.readUInt32BE(0), Buffer.byteLength(json), 'header is the UTF-8 byte length');
  t.equal(frame.length, HEADER_BYTES + Buffer.byteLength(json));
  const d = new FrameDecoder(1024);
  const got: unknown[] = [];
  d.push(frame, (p) => {
    const parsed = parseFrame(p);
    got.push(parsed.ok ? parsed.value : parsed.error);
  });
  t.same(got, [message]);

  const text = '😀é';
  const fromString = frameBytes(text);
  t.equal(fromString.readUInt32BE(0), 6, 'frameBytes counts bytes of a string');
  t.equal(fromString.subarray(HEADER_BYTES).toString('utf8'), text);
  const raw = Buffer.from([0xff, 0x00, 0xfe]);
  const fromBuffer = frameBytes(raw);
  t.equal(fromBuffer.readUInt32BE(0), 3);
  t.ok(fromBuffer.subarray(HEADER_BYTES).equals(raw), 'frameBytes keeps raw bytes as they are');
  t.equal(new FrameDecoder(16).push(frameBytes(''), () => {})?.code, 'E_FRAME_EMPTY', 'an empty payload frames as length zero');
});

t.test('a consumer can stop decoding mid-chunk and resume with an empty push', async (t) => {
  const d = new FrameDecoder(1024);
  const frames = [0, 1, 2, 3, 4].map((i) => encodeFrame({ i }));
  const got: number[] = [];
  let allow = 2;
  const take = (p: Buffer): boolean => {
    got.push((JSON.parse(p.toString()) as { i: number }).i);
    return --allow > 0;
  };
  t.equal(d.push(Buffer.concat(frames), take), null);
  t.same(got, [0, 1], 'stopped after the consumer said so');
  t.ok(d.hasBacklog, 'the rest is held');
  t.equal(d.bufferedBytes, frames.slice(2).reduce((n, f) => n + f.length, 0), 'and counted');
  allow = 10;
  d.push(Buffer.alloc(0), take);
  t.same(got, [0, 1, 2, 3, 4], 'resumed where it stopped');
  t.notOk(d.hasBacklog);
});

t.test('a 64 KiB payload trickled a byte at a time is delivered whole and intact', async (t) => {
  const d = new FrameDecoder(1 << 17);
  const body = Buffer.from(Array.from({ length: 65536 }, (_, i) => (i * 7) & 0xff));
  const frame = frameBytes(body);
  const delivered: Buffer[] = [];
  for (let i = 0; i < frame.length; i++) {
    d.push(Buffer.from([frame[i]!]), (p) => delivered.push(Buffer.from(p)));
    if (i === frame.length - 2) t.equal(d.bufferedBytes, frame.length - 1, 'everything but the last byte is held');
  }
  t.equal(delivered.length, 1);
  t.ok(delivered[0]!.equals(body), 'byte for byte');
  t.equal(d.bufferedBytes, 0);
});

// --- The shared budget for partial frames [P-1.8] -------------------------------------------

t.test('with a budget, a partial frame reserves its announced length until it completes', async (t) => {
  const budget = new BufferBudget(1000);
  const d = new FrameDecoder(1024, budget);
  const frame = frameBytes(Buffer.alloc(300, 0x61));
  t.equal(d.push(frame.subarray(0, 3), () => {}), null);
  t.equal(budget.used, 0, 'part of a header reserves nothing');
  t.equal(d.push(frame.subarray(3, 10), () => {}), null);
  t.equal(budget.used, 300, 'a complete header reserves the whole payload: that is what is allocated');
  let delivered = 0;
  t.equal(d.push(frame.subarray(10), () => delivered++), null);
  t.equal(delivered, 1);
  t.equal(budget.used, 0, 'given back once the frame is complete');
  t.equal(budget.peak, 300);
});

t.test('frames that arrive whole in one chunk cost the budget nothing, however large', async (t) => {
  const budget = new BufferBudget(10);
  const d = new FrameDecoder(1024, budget);
  let delivered = 0;
  t.equal(d.push(Buffer.concat([frameBytes(Buffer.alloc(1000, 0x61)), frameBytes('{}')]), () => delivered++), null);
  t.equal(delivered, 2);
  t.equal(budget.peak, 0, 'no copy, so nothing reserved');
});

t.test('a partial frame that does not fit is refused, after the frames before it were delivered', async (t) => {
  const budget = new BufferBudget(500);
  const holder = new FrameDecoder(1024, budget);
  holder.push(header(400), () => {});
  t.equal(budget.used, 400, 'another connection holds 400 bytes');
  const d = new FrameDecoder(1024, budget);
  const got: string[] = [];
  const refusal = d.push(Buffer.concat([frameBytes('first'), header(101), Buffer.from('x')]), (p) => got.push(p.toString()));
  t.same(got, ['first'], 'the whole frame before it was delivered');
  t.match(refusal, { code: 'over-budget', bytes: 101 });
  t.equal(d.failed, refusal, 'the stream is failed');
  t.equal(d.push(frameBytes('later'), (p) => got.push(p.toString())), refusal, 'and stays failed');
  t.same(got, ['first'], 'nothing more is delivered');
  t.equal(budget.used, 400, 'the refused frame reserved nothing');
  const fits = new FrameDecoder(1024, budget);
  t.equal(fits.push(header(100), () => {}), null, 'a frame that fits exactly is accepted');
  t.equal(budget.used, 500);
});

t.test('discard, and a framing error, give a partial frame’s reservation back', async (t) => {
  const budget = new BufferBudget(10_000);
  const a = new FrameDecoder(1024, budget);
  a.push(Buffer.concat([header(1000), Buffer.from('abc')]), () => {});
  const b = new FrameDecoder(1024, budget);
  b.push(Buffer.concat([header(500), Buffer.from('abc')]), () => {});
  t.equal(budget.used, 1500);
  a.discard();
  t.equal(budget.used, 500, 'discard (the connection closed) releases');
  t.equal(a.bufferedBytes, 0);
  a.discard();
  t.equal(budget.used, 500, 'twice is harmless');
  // b's frame completes into a zero-length header: the failure must not keep anything reserved.
  t.equal(b.push(Buffer.concat([Buffer.alloc(497, 0x20), header(0)]), () => {})?.code, 'E_FRAME_EMPTY');
  t.equal(budget.used, 0);
});

t.test('many decoders fed random streams in random chunks never exceed the budget, and give everything back (seeded)', async (t) => {
  const rng = mulberry32(0xb0d6e7);
  const budget = new BufferBudget(4096);
  const decoders = Array.from({ length: 20 }, () => new FrameDecoder(1024, budget));
  let over = 0;
  let refused = 0;
  let delivered = 0;
  for (let step = 0; step < 5000; step++) {
    const i = Math.floor(rng() * decoders.length);
    const d = decoders[i]!;
    if (d.failed) {
      if (d.failed.code === 'over-budget') refused++;
      d.discard();
      decoders[i] = new FrameDecoder(1024, budget);
      continue;
    }
    const r = rng();
    const chunk = r < 0.3 ? header(1 + Math.floor(rng() * 1024)) : Buffer.alloc(Math.floor(rng() * 600), 0x61);
    d.push(chunk, () => delivered++);
    if (budget.used > budget.capacity || budget.used < 0) over++;
  }
  t.equal(over, 0, 'the budget was never exceeded');
  t.ok(refused > 0 && delivered > 0, `both refusals (${refused}) and frames (${delivered}) happened`);
  t.ok(budget.peak > budget.capacity / 2, `the budget was put to use (peak ${budget.peak})`);
  for (const d of decoders) d.discard();
  t.equal(budget.used, 0, 'nothing leaks');
});
