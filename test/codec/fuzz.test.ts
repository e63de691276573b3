import { duplexPair } from 'node:stream';
import t from 'tap';
import { FrameDecoder, HEADER_BYTES, parseFrame, type FrameError } from '../../src/codec/frame-decoder.js';
import { frameBytes } from '../../src/codec/frame-encoder.js';
import type { MailMessage, Mailer } from '../../src/mail/mailer.js';
import { Connection } from '../../src/server/connection.js';
import type { Response } from '../../src/server/dispatcher.js';
import { ALICE, MAC, startHarness, type Harness } from '../helpers/harness.js';
import { mulberry32 } from '../helpers/test-utils.js';

/*
 * Bounded, seeded fuzzing. Every case is reproducible from SEED; a failure message names the case
 * number. Outcomes that once were bugs (an unbounded echo of a field name, an astral-character id,
 * two framing errors in one chunk) are counted apart, so a regression names itself.
 */
const SEED = 0x5eed_2026;


class Rng {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  /** Code points from many planes, including controls, lone surrogates, BOM and line separators. */
  unicode(n: number): string {
    const ranges: Array<[number, number]> = [
      [0x20, 0x7e], [0x00, 0x1f], [0xa0, 0x2ff], [0x370, 0x3ff], [0x600, 0x6ff], [0x4e00, 0x9fff],
      [0xd800, 0xdfff], [0xfeff, 0xfeff], [0x2028, 0x2029], [0x1f300, 0x1faff], [0x10000, 0x10ffff],
    ];
    let s = '';
    for (let i = 0; i < n; i++) {
      const [lo, hi] = this.pick(ranges);
      s += String.fromCodePoint(lo + this.int(hi - lo + 1));
    }
    return s;
  }
  /** Splits `buf` into random chunks, some tiny, some empty, some large. */
  chunks(buf: Buffer): Buffer[] {
    const out: Buffer[] = [];
    for (let off = 0; off < buf.length; ) {
      const size = this.chance(0.05) ? 0 : 1 + this.int(this.chance(0.5) ? 6 : 900);
      out.push(buf.subarray(off, off + size));
      off += size;
    }
    return out;
  }
}

const FRAME_CODES = new Set(['E_FRAME_EMPTY', 'E_FRAME_TOO_LARGE', 'E_FRAME_INVALID_UTF8', 'E_FRAME_INVALID_JSON', 'E_FRAME_NOT_OBJECT']);


/** A reference decoder: the whole stream at once, the simplest way. Chunked decoding must agree. */
function referenceDecode(stream: Buffer, max: number): { payloads: Buffer[]; error: string | null } {
  const payloads: Buffer[] = [];
  let off = 0;
  while (stream.length - off >= HEADER_BYTES) {
    const len = stream.readUInt32BE(off);
    if (len === 0) return { payloads, error: 'E_FRAME_EMPTY' };
    if (len > max) return { payloads, error: 'E_FRAME_TOO_LARGE' };
    if (stream.length - off - HEADER_BYTES < len) break;
    payloads.push(stream.subarray(off + HEADER_BYTES, off + HEADER_BYTES + len));
    off += HEADER_BYTES + len;
  }
  return { payloads, error: null };
}

t.test('random bytes in random chunks never make FrameDecoder or parseFrame throw', async (t) => {
  const rng = new Rng(SEED);
  const CASES = 2500;
  const failures: string[] = [];
  let frames = 0;
  let framingErrors = 0;
  const parseOutcomes = new Map<string, number>();
  for (let n = 0; n < CASES; n++) {
    const max = 1 + rng.int(rng.chance(0.5) ? 64 : 1024);
    // Half pure noise; half honest headers around random, text-like or JSON-like payloads, so the
    // decoder gets past the header and parseFrame sees every kind of payload.
    const parts: Buffer[] = [];
    if (rng.chance(0.3)) {
      parts.push(rng.bytes(rng.int(600)));
    } else {
      for (let k = rng.int(8); k >= 0; k--) {
        const kind = rng.int(6);
        const payload =
          kind === 0 ? rng.bytes(rng.int(max + 2))
          : kind === 1 ? Buffer.from(rng.unicode(rng.int(40)))
          : kind === 2 ? Buffer.from(JSON.stringify({ code: rng.int(5), id: rng.unicode(rng.int(8)) }))
          : kind === 3 ? Buffer.from(rng.pick(['[]', '1', 'null', '"s"', 'true', '{', '{"a":}', '{}']))
          : kind === 4 ? Buffer.concat([Buffer.from('{"a":"'), rng.bytes(rng.int(8)), Buffer.from('"}')])
          : Buffer.alloc(0);
        parts.push(frameBytes(payload));
      }
      if (rng.chance(0.3)) parts.push(rng.bytes(rng.int(8))); // a ragged tail
    }
    const stream = Buffer.concat(parts);
    const expected = referenceDecode(stream, max);
    const decoder = new FrameDecoder(max);
    const payloads: Buffer[] = [];
    let failure: FrameError | null = null;
    try {
      for (const chunk of rng.chunks(stream)) {
        let afterFailure = 0;
        const res = decoder.push(chunk, (p) => {
          if (failure) afterFailure++;
          payloads.push(Buffer.from(p));
          const parsed = parseFrame(p);
          const key = parsed.ok ? 'ok' : parsed.error.code;
          parseOutcomes.set(key, (parseOutcomes.get(key) ?? 0) + 1);
          if (!parsed.ok && !FRAME_CODES.has(parsed.error.code)) failures.push(`case ${n}: parseFrame gave ${parsed.error.code}`);
        });
        if (afterFailure > 0) failures.push(`case ${n}: delivered ${afterFailure} payloads after failing`);
        if (failure && res !== failure) failures.push(`case ${n}: a push after the failure returned something else`);
        if (res && !FRAME_CODES.has(res.code)) failures.push(`case ${n}: unknown failure code ${res.code}`);
        failure ??= res;
      }
    } catch (err) {
      failures.push(`case ${n}: threw ${(err as Error).stack}`);
      continue;
    }
    frames += payloads.length;
    if (failure) framingErrors++;
    if ((failure?.code ?? null) !== expected.error) failures.push(`case ${n}: failure ${failure?.code} but reference says ${expected.error}`);
    if (payloads.length !== expected.payloads.length || payloads.some((p, i) => !p.equals(expected.payloads[i]!))) {
      failures.push(`case ${n}: chunked decoding delivered other payloads than whole-stream decoding`);
    }
  }
  t.same(failures.slice(0, 5), [], `${CASES} streams (seed ${SEED}) decoded without a fault`);
  t.ok(frames > CASES, `the fuzz reached the payload stage (${frames} payloads)`);
  t.ok(framingErrors > CASES / 10, `and the error paths (${framingErrors} streams failed)`);
  for (const code of ['ok', 'E_FRAME_INVALID_UTF8', 'E_FRAME_INVALID_JSON', 'E_FRAME_NOT_OBJECT']) {
    t.ok((parseOutcomes.get(code) ?? 0) > 0, `parseFrame outcome ${code} was exercised`);
  }
});

// --- Requests through the real dispatcher ---------------------------------------------------

const TYPE_SWAPS: readonly unknown[] = [0, -1, 1.5, 1e308, true, false, null, [], {}, [1, 'a'], { a: 1 }, '', '0', '1'];
const ODD_KEYS = ['constructor', 'toString', 'hasOwnProperty', 'prototype', 'valueOf', '', ' ', 'id ', 'Code', 'CODE'];

interface Case {
  readonly text: string;
  readonly label: string;
}

/** A schema-valid request for a random command, then 0–3 random mutations, as JSON text. */
function makeCase(rng: Rng, token: string): Case {
  const id = `f${rng.int(1e6)}`;
  const base: Array<Record<string, unknown>> = [
    { code: 0, id },
    { code: 1, id, email: rng.chance(0.5) ? ALICE.email : `u${rng.int(99)}@example.com`, password: rng.chance(0.5) ? ALICE.password : 'pw', mac: MAC, ip: '192.0.2.10' },
    { code: 2, id, email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode: 'ABC234', mac: MAC },
    { code: 3, id, token: rng.chance(0.5) ? token : 'Awfer_hellwall_' + 'A'.repeat(43), mac: MAC, request: 'inventory.read', data: { item: 42 } },
  ];
  const msg = { ...rng.pick(base) };
  const labels: string[] = [`code ${String(msg.code)}`];
  let deep = 0;
  let proto: string | null = null;
  let duplicate: string | null = null;
  const keys = (): string[] => Object.keys(msg);
  for (let m = rng.int(4); m > 0; m--) {
    const op = rng.int(11);
    const key = rng.pick(keys().length > 0 ? keys() : ['code']);
    switch (op) {
      case 0:
        delete msg[key];
        labels.push(`delete ${key}`);
        break;
      case 1:
        msg[key] = rng.pick(TYPE_SWAPS);
        labels.push(`swap ${key}`);
        break;
      case 2:
        msg[key] = rng.chance(0.5) ? 'a'.repeat(rng.int(60_000)) : rng.unicode(rng.int(4000));
        labels.push(`huge ${key}`);
        break;
      case 3:
        msg[key] = rng.unicode(1 + rng.int(40));
        labels.push(`unicode ${key}`);
        break;
      case 4: {
        const extra = rng.pick([
          () => `x${rng.int(100)}`,
          () => rng.unicode(1 + rng.int(12)),
          () => rng.pick(ODD_KEYS),
          () => 'k'.repeat(400 + rng.int(2000)),
        ])();
        msg[extra] = rng.pick(TYPE_SWAPS);
        labels.push('extra field');
        break;
      }
      case 5:
        proto = rng.pick(['{"code":0}', '{"polluted":true}', 'null', '[]', '{"__proto__":{"id":"x"}}']);
        labels.push('__proto__ key');
        break;
      case 6:
        deep = 1 + rng.int(5000);
        labels.push(`depth ${deep}`);
        break;
      case 7:
        msg.code = rng.pick([-1, 4, 99, 2 ** 31, 2 ** 53, 1e300, 0.5, -0, '0', null, 1e-7]);
        labels.push('code value');
        break;
      case 8:
        msg.id = rng.pick<unknown>([7, '', 'x'.repeat(64), 'x'.repeat(65), '😀'.repeat(40), '😀'.repeat(65), {}, null, true, rng.unicode(1 + rng.int(10))]);
        labels.push('id value');
        break;
      case 9:
        duplicate = rng.pick(['"code":"dup"', '"code":0', '"id":5', `"id":"dup"`]);
        labels.push('duplicate key');
        break;
      default:
        delete msg.code;
        labels.push('no code');
    }
  }
  let text = JSON.stringify(msg);
  if (deep > 0) {
    const nest = rng.chance(0.5) ? ['['.repeat(deep), ']'.repeat(deep)] : ['{"a":'.repeat(deep) + '0', '}'.repeat(deep)];
    text = `{"${rng.pick(['data', 'email', 'nested'])}":${nest[0]}${nest[1]}${text === '{}' ? '}' : ',' + text.slice(1)}`;
  }
  if (proto !== null) text = `{"__proto__":${proto}${text === '{}' ? '}' : ',' + text.slice(1)}`;
  if (duplicate !== null) text = text === '{}' ? `{${duplicate}}` : `${text.slice(0, -1)},${duplicate}}`;
  return { text, label: labels.join(', ') };
}

const codePoints = (s: string): number => [...s].length;
const isValidId = (id: unknown): id is string => typeof id === 'string' && codePoints(id) >= 1 && codePoints(id) <= 64;

type Verdict = { ok: true } | { ok: false; known?: 'long-unknown-field' | 'astral-id'; why: string };

/** Everything a response to `msg` must be, whatever `msg` was. */
function judge(h: Harness, msg: Record<string, unknown>, res: Response): Verdict {
  const r = res as Record<string, unknown> & { status: string };
  if (typeof r.status !== 'string') return { ok: false, why: 'no status' };
  if (r.status === 'error' && FRAME_CODES.has(r.error as string)) return { ok: false, why: `dispatcher answered framing error ${String(r.error)}` };
  const invalid = h.validate(r);
  if (invalid !== null) {
    const message = typeof r.message === 'string' ? r.message : '';
    if (r.error === 'E_SCHEMA' && / has unknown field /.test(message) && codePoints(message) > 512) {
      return { ok: false, known: 'long-unknown-field', why: `E_SCHEMA message of ${codePoints(message)} characters` };
    }
    return { ok: false, why: `response does not match its schema: ${invalid}` };
  }
  if ('id' in r && r.id !== msg.id) return { ok: false, why: `id ${JSON.stringify(r.id)} is not the request's` };
  if (isValidId(msg.id) && r.id !== msg.id) {
    if (msg.id.length > 64) return { ok: false, known: 'astral-id', why: `valid id of ${codePoints(msg.id)} code points not echoed` };
    return { ok: false, why: 'a valid id was not echoed' };
  }
  if (Number.isInteger(msg.code) && r.code !== msg.code) return { ok: false, why: `code ${String(r.code)} is not the request's ${String(msg.code)}` };
  if (!Number.isInteger(msg.code) && r.code !== undefined) return { ok: false, why: 'a code was echoed for a request without an integer code' };
  if (Number.isInteger(msg.code) && ![0, 1, 2, 3].includes(msg.code as number) && r.error !== 'E_UNKNOWN_COMMAND') {
    return { ok: false, why: `unknown command answered ${String(r.error ?? r.status)}` };
  }
  return { ok: true };
}

/** A harness with mail captured in memory, and a real session for Alice made through the dispatcher. */
async function fuzzHarness(t: Parameters<typeof startHarness>[0]): Promise<{ h: Harness; token: string }> {
  const mails: MailMessage[] = [];
  const mailer: Mailer = {
    send: async (m) => {
      mails.push(m);
    },
    close: () => {},
  };
  const h = await startHarness(t, { mailer });
  const ctx = { ip: '127.0.0.1', log: h.app.log.child({ setup: true }), refusals: 0 };
  await h.app.dispatch({ code: 1, email: ALICE.email, password: ALICE.password, mac: MAC }, ctx);
  for (let i = 0; i < 200 && mails.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  const passcode = /passcode is: ([A-Z0-9]{6})/.exec(mails[0]?.text ?? '')?.[1];
  if (!passcode) throw new Error('no passcode mail');
  const login = (await h.app.dispatch(
    { code: 2, email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode, mac: MAC },
    ctx,
  )) as { token?: string };
  if (!login.token) throw new Error(`login failed: ${JSON.stringify(login)}`);
  return { h, token: login.token };
}

// One server for both suites below; they only add sessions and passcodes to its database.
const { h, token } = await fuzzHarness(t);

t.test('mutated requests through the real dispatcher never throw and always get a schema-valid answer', async (t) => {
  const rng = new Rng(SEED + 1);
  const CASES = 4000;
  const failures: string[] = [];
  const known = { 'long-unknown-field': [] as string[], 'astral-id': [] as string[] };
  const outcomes = new Map<string, number>();
  const ctx = { ip: '127.0.0.1', log: h.app.log.child({ fuzz: true }), refusals: 0 };
  for (let start = 0; start < CASES; start += 25) {
    if (start % 1000 === 0) h.clock.advance(rng.int(2 * 3600_000)); // visit authorized and renew
    const batch: Array<Promise<void>> = [];
    for (let n = start; n < Math.min(CASES, start + 25); n++) {
      const c = makeCase(rng, token);
      const parsed = parseFrame(Buffer.from(c.text));
      if (!parsed.ok) {
        failures.push(`case ${n} (${c.label}): the generator made a non-object: ${parsed.error.code}`);
        continue;
      }
      const msg = parsed.value;
      batch.push(
        (async () => {
          let res: Response;
          try {
            res = await h.app.dispatch(msg, ctx);
          } catch (err) {
            failures.push(`case ${n} (${c.label}): dispatch threw ${(err as Error).stack}`);
            return;
          }
          const key = res.status === 'error' ? String(res.error) : String(res.status);
          outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
          const v = judge(h, msg, res);
          if (v.ok) return;
          if (v.known) known[v.known].push(`case ${n} (${c.label}): ${v.why}`);
          else failures.push(`case ${n} (${c.label}): ${v.why}; request ${c.text.slice(0, 200)}; response ${JSON.stringify(res).slice(0, 300)}`);
        })(),
      );
    }
    await Promise.all(batch);
  }
  t.same(failures.slice(0, 5), [], `${CASES} mutated requests (seed ${SEED + 1}) answered correctly`);
  t.same(known['long-unknown-field'].slice(0, 2), [], 'E_SCHEMA messages stay within the error schema’s 512 characters');
  t.same(known['astral-id'].slice(0, 2), [], 'a schema-valid id is echoed even when it has astral characters');
  for (const outcome of ['ok', 'authorized', 'unauthorized', 'E_SCHEMA', 'E_UNKNOWN_COMMAND', 'E_AUTH_FAILED']) {
    t.ok((outcomes.get(outcome) ?? 0) > 0, `outcome ${outcome} was reached (${outcomes.get(outcome) ?? 0} times)`);
  }
});

// --- Whole streams through a Connection with the real dispatcher ----------------------------

t.test('random request streams through a Connection get one valid answer per frame, in order', async (t) => {
  const rng = new Rng(SEED + 2);
  const MAX = 4096;
  const CASES = 250;
  const failures: string[] = [];
  const doubleErrors: string[] = [];
  let answered = 0;
  let closedByError = 0;
  for (let n = 0; n < CASES; n++) {
    // Build the stream and, alongside, what the server must answer.
    const parts: Buffer[] = [];
    const expect: Array<{ msg: Record<string, unknown> } | { error: string }> = [];
    let stopped = false;
    for (let k = 1 + rng.int(8); k > 0; k--) {
      const kind = rng.int(20);
      let payload: Buffer;
      if (kind < 15) payload = Buffer.from(makeCase(rng, token).text);
      else if (kind === 15) payload = Buffer.from([0x7b, 0xff, 0x7d]);
      else if (kind === 16) payload = Buffer.from(rng.pick(['[1]', '7', 'null', '"x"']));
      else if (kind === 17) payload = Buffer.from('{"code":0,');
      else if (kind === 18) payload = Buffer.alloc(0);
      else payload = rng.bytes(1 + rng.int(40));
      parts.push(frameBytes(payload));
      if (stopped) continue;
      if (payload.length === 0) expect.push({ error: 'E_FRAME_EMPTY' });
      else if (payload.length > MAX) expect.push({ error: 'E_FRAME_TOO_LARGE' });
      else {
        const parsed = parseFrame(payload);
        expect.push(parsed.ok ? { msg: parsed.value } : { error: parsed.error.code });
      }
      if ('error' in expect[expect.length - 1]!) stopped = true;
    }
    if (rng.chance(0.2)) parts.push(frameBytes('{"code":0}').subarray(0, 1 + rng.int(6))); // truncated tail
    const [server, peer] = duplexPair();
    const conn = new Connection(server, {
      dispatch: h.app.dispatch,
      log: h.app.log.child({ fuzzConn: n }),
      ip: '127.0.0.1',
      maxFrameBytes: MAX,
      maxInflight: 1 + rng.int(8),
      closeTimeoutMs: 20,
    });
    const got: Array<Record<string, unknown>> = [];
    const decoder = new FrameDecoder(1 << 24);
    peer.on('data', (chunk: Buffer) => {
      const err = decoder.push(chunk, (p) => {
        const parsed = parseFrame(p);
        got.push(parsed.ok ? parsed.value : { undecodable: parsed.error.code });
      });
      if (err) got.push({ undecodable: err.code });
    });
    const ended = new Promise<string>((resolve) => peer.once('end', () => resolve('end')));
    for (const chunk of rng.chunks(Buffer.concat(parts))) peer.write(chunk);
    peer.end();
    const outcome = await Promise.race([ended, new Promise<string>((r) => setTimeout(() => r('timeout'), 5000))]);
    server.destroy();
    peer.destroy();
    await conn.closed;
    if (outcome !== 'end') {
      failures.push(`stream ${n}: the server never ended its side (${got.length} of ${expect.length} answers)`);
      continue;
    }
    let bad = false;
    for (const [i, e] of expect.entries()) {
      const res = got[i];
      if (!res) {
        failures.push(`stream ${n}: answer ${i} missing (${got.length} of ${expect.length})`);
        bad = true;
        break;
      }
      if ('error' in e) {
        const framing = res.status === 'error' && res.error === e.error && !('id' in res) && h.validate(res as never) === null;
        if (!framing) failures.push(`stream ${n}: answer ${i} should be ${e.error}, got ${JSON.stringify(res).slice(0, 200)}`);
        closedByError++;
      } else {
        const v = judge(h, e.msg, res);
        if (!v.ok && !v.known) failures.push(`stream ${n}: answer ${i}: ${v.why}`);
        answered++;
      }
    }
    if (!bad && got.length > expect.length) {
      const extra = got.slice(expect.length);
      const lastExpected = expect[expect.length - 1];
      if (lastExpected && 'error' in lastExpected && extra.every((r) => r.status === 'error' && FRAME_CODES.has(r.error as string))) {
        doubleErrors.push(`stream ${n}: ${extra.length} more framing error(s) after ${lastExpected.error}`);
      } else {
        failures.push(`stream ${n}: ${extra.length} answers more than requests`);
      }
    }
  }
  t.same(failures.slice(0, 5), [], `${CASES} streams (seed ${SEED + 2}) answered exactly`);
  t.ok(answered > CASES, `requests were answered (${answered})`);
  t.ok(closedByError > CASES / 10, `streams were closed by framing errors (${closedByError})`);
  t.same(doubleErrors.slice(0, 2), [], 'a connection answers at most one framing error');
});
