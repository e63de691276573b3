import { readdirSync, readFileSync } from 'node:fs';
import { duplexPair } from 'node:stream';
import path from 'node:path';
import tls from 'node:tls';
import { pathToFileURL } from 'node:url';
import t from 'tap';
import { FrameDecoder, HEADER_BYTES, parseFrame, type DecodeFailure } from '../../src/codec/frame-decoder.js';
import { frameBytes } from '../../src/codec/frame-encoder.js';
import type { MailMessage, Mailer } from '../../src/mail/mailer.js';
import { Connection } from '../../src/server/connection.js';
import type { Response } from '../../src/server/dispatcher.js';
import { loadProtocol } from '../../src/protocol/registry.js';
import { ALICE, MAC, startHarness, type Harness } from '../helpers/harness.js';
import type { LogLine } from '../helpers/log-sink.js';
import { ROOT } from '../helpers/root.js';
import { mulberry32 } from '../helpers/test-utils.js';

/*
 * Bounded, seeded fuzzing. Every case is reproducible from SEED; a failure message names the case
 * number. Outcomes that once were bugs (an unbounded echo of a field name, an astral-character id,
 * two framing errors in one chunk) are counted apart, so a regression names itself.
 *
 * HELLWALL_FUZZ_SEED replays a run (decimal or 0x hex); HELLWALL_FUZZ_CASES sets the number of
 * wire streams and scales every other suite with it (`npm run fuzz` runs many more).
 */
function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, not ${raw}`);
  return n;
}
const SEED = envInt('HELLWALL_FUZZ_SEED', 0x5eed_2026) >>> 0;
const DEFAULT_WIRE_CASES = 200;
const WIRE_CASES = Math.max(1, envInt('HELLWALL_FUZZ_CASES', DEFAULT_WIRE_CASES));
/** `n` cases at the default size, scaled like the wire suite. */
const scaled = (n: number): number => Math.max(1, Math.round((n * WIRE_CASES) / DEFAULT_WIRE_CASES));
t.comment(`fuzz seed ${SEED} (0x${SEED.toString(16)}), ${WIRE_CASES} wire streams: replay with HELLWALL_FUZZ_SEED=${SEED} HELLWALL_FUZZ_CASES=${WIRE_CASES}`);


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
  const CASES = scaled(2500);
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
    let failure: DecodeFailure | null = null;
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
function makeCase(rng: Rng, token: string, from?: Record<string, unknown>): Case {
  const id = `f${rng.int(1e6)}`;
  const base: Array<Record<string, unknown>> = [
    { code: 0, id },
    { code: 1, id, email: rng.chance(0.5) ? ALICE.email : `u${rng.int(99)}@example.com`, password: rng.chance(0.5) ? ALICE.password : 'pw', mac: MAC, ip: '192.0.2.10' },
    { code: 2, id, email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode: 'ABC234', mac: MAC },
    { code: 3, id, token: rng.chance(0.5) ? token : 'Awfer_hellwall_' + 'A'.repeat(43), mac: MAC, request: 'inventory.read', data: { item: 42 } },
  ];
  const msg = { ...(from ?? rng.pick(base)) };
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
        msg.code = rng.pick([-1, 7, 99, 65535, 65536, 2 ** 31, 2 ** 53, 1e23, 1e300, 0.5, -0, '0', null, 1e-7]);
        labels.push('code value');
        break;
      case 8:
        msg.id = rng.pick<unknown>([7, '', 'x'.repeat(64), 'x'.repeat(65), '😀'.repeat(40), '😀'.repeat(65), 'a\u0000b', '\ud800', 'x\udfff', '\u0085', {}, null, true, rng.unicode(1 + rng.int(10))]);
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
// What the contract accepts, judged by the server's compiled schema (common.json#/definitions/id).
const acceptsId = loadProtocol().commands.get(0)!.validateRequest;
const isValidId = (id: unknown): id is string => acceptsId({ code: 0, id }) === true;
/** [P-2.1] A command code is an integer from 0 to 65535 (error.response.json `code`). */
const isValidCode = (code: unknown): code is number => Number.isInteger(code) && (code as number) >= 0 && (code as number) <= 65535;

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
  if (isValidCode(msg.code) && r.code !== msg.code) return { ok: false, why: `code ${String(r.code)} is not the request's ${String(msg.code)}` };
  if (!isValidCode(msg.code) && r.code !== undefined) return { ok: false, why: 'a code was echoed for a request without a valid code' };
  if (!isValidCode(msg.code) && r.error !== 'E_SCHEMA') return { ok: false, why: `a request without a valid code answered ${String(r.error ?? r.status)}` };
  if (isValidCode(msg.code) && !COMMAND_CODES.has(msg.code) && r.error !== 'E_UNKNOWN_COMMAND') {
    return { ok: false, why: `unknown command answered ${String(r.error ?? r.status)}` };
  }
  return { ok: true };
}

// The codes protocol/index.json defines; any other integer must answer E_UNKNOWN_COMMAND [P-2.2].
const COMMAND_CODES = new Set(loadProtocol().commands.keys());

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
  const CASES = scaled(4000);
  const failures: string[] = [];
  const known = { 'long-unknown-field': [] as string[], 'astral-id': [] as string[] };
  const outcomes = new Map<string, number>();
  const ctx = { ip: '127.0.0.1', log: h.app.log.child({ fuzz: true }), refusals: 0 };
  for (let start = 0; start < CASES; start += 25) {
    if (start % 1000 === 0) {
      // Visit authorized and renew. The first thousand run at the login instant whatever the seed:
      // a jump past the TTL there would rotate the token before any check could be authorized.
      const jump = rng.int(2 * 3600_000);
      if (start > 0) h.clock.advance(jump);
    }
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
  const CASES = scaled(250);
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

// --- Over the real wire: TLS to the harness server -------------------------------------------

/** Every request example in protocol/schemas: schema-valid messages, as a client author reads them. */
const SCHEMA_EXAMPLES: ReadonlyArray<Record<string, unknown>> = (() => {
  const dir = pathToFileURL(path.join(ROOT, 'protocol/schemas') + '/');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.request.json'))
    .flatMap((f) => (JSON.parse(readFileSync(new URL(f, dir), 'utf8')) as { examples?: Array<Record<string, unknown>> }).examples ?? []);
})();

// Byte sequences that UTF-8 and JSON parsers have got wrong: overlong encodings, encoded
// surrogates, a BOM, code points past U+10FFFF, a stray continuation byte, NUL, lone escapes.
const NASTY_BYTES: readonly Buffer[] = [
  [0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf], [0xef, 0xbb, 0xbf], [0xf4, 0x90, 0x80, 0x80],
  [0x80], [0xff], [0x00], [0x5c], [0x5c, 0x75, 0x64, 0x38, 0x30, 0x30], [0x22], [0x7b], [0x7d], [0x2c],
].map((b) => Buffer.from(b));

/** 1–4 byte-level mutations of `buf`: flips, inserts, deletes, duplicated slices, truncation. */
function mutateBytes(rng: Rng, buf: Buffer): { bytes: Buffer; label: string } {
  let b = Buffer.from(buf);
  const labels: string[] = [];
  for (let m = 1 + rng.int(4); m > 0; m--) {
    const at = rng.int(b.length + 1);
    switch (rng.int(7)) {
      case 0:
        if (b.length > 0) b[at % b.length]! ^= 1 << rng.int(8);
        labels.push('flip');
        break;
      case 1:
        b = Buffer.concat([b.subarray(0, at), rng.bytes(1 + rng.int(4)), b.subarray(at)]);
        labels.push('insert');
        break;
      case 2:
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + rng.int(4))]);
        labels.push('delete');
        break;
      case 3: {
        const end = at + rng.int(16);
        b = Buffer.concat([b.subarray(0, end), b.subarray(at, end), b.subarray(end)]);
        labels.push('duplicate');
        break;
      }
      case 4:
        b = b.subarray(0, at);
        labels.push('truncate');
        break;
      case 5:
        b = Buffer.concat([b.subarray(0, at), rng.pick(NASTY_BYTES), b.subarray(at)]);
        labels.push('nasty bytes');
        break;
      default:
        if (b.length > 1) {
          const j = rng.int(b.length);
          const k = rng.int(b.length);
          [b[j], b[k]] = [b[k]!, b[j]!];
        }
        labels.push('swap');
    }
  }
  return { bytes: b, label: labels.join('+') };
}

/** A schema example, sometimes with live credentials or the live token, so mutants reach deep paths. */
function liveExample(rng: Rng, token: string): Record<string, unknown> {
  const msg: Record<string, unknown> = { ...rng.pick(SCHEMA_EXAMPLES) };
  if (rng.chance(0.5)) {
    if ('email' in msg) Object.assign(msg, { email: ALICE.email, password: ALICE.password });
    if ('phone' in msg) msg.phone = ALICE.phone;
    // Not for session.logout / session.logout_all: with the live token they would rightly end the
    // session the suite checks at the end (their success paths are tested in sessions.test.ts).
    if ('token' in msg && msg.code !== 4 && msg.code !== 5) msg.token = token;
    if ('mac' in msg) msg.mac = MAC;
  }
  if (rng.chance(0.3)) delete msg.id;
  return msg;
}

/** One stream of frames for a connection, and what it is made of, for the failure message. */
function makeWireStream(rng: Rng, token: string, max: number): { stream: Buffer; label: string } {
  const parts: Buffer[] = [];
  const labels: string[] = [];
  for (let k = 1 + rng.int(6); k > 0; k--) {
    const kind = rng.int(12);
    if (kind < 4) {
      const c = makeCase(rng, token, liveExample(rng, token));
      parts.push(frameBytes(Buffer.from(c.text)));
      labels.push(`example(${c.label})`);
    } else if (kind < 6) {
      const c = makeCase(rng, token);
      parts.push(frameBytes(Buffer.from(c.text)));
      labels.push(`case(${c.label})`);
    } else if (kind < 9) {
      const m = mutateBytes(rng, Buffer.from(JSON.stringify(liveExample(rng, token))));
      parts.push(frameBytes(m.bytes));
      labels.push(`bytes(${m.label})`);
    } else if (kind === 9) {
      parts.push(frameBytes(rng.bytes(rng.int(64))));
      labels.push('noise frame');
    } else if (kind === 10) {
      parts.push(frameBytes(Buffer.from(JSON.stringify({ ...liveExample(rng, token), pad: 'p'.repeat(max) }))));
      labels.push('oversize');
    } else {
      // A valid request whose length prefix (or anything else in the framed bytes) is mutated.
      const m = mutateBytes(rng, frameBytes(Buffer.from(JSON.stringify(liveExample(rng, token)))));
      parts.push(m.bytes);
      labels.push(`framed bytes(${m.label})`);
    }
  }
  if (rng.chance(0.1)) {
    parts.push(rng.bytes(1 + rng.int(300)));
    labels.push('noise tail');
  }
  return { stream: Buffer.concat(parts), label: labels.join(', ') };
}

type Expected = { msg: Record<string, unknown> } | { error: string };

/** What the server must answer to `stream`, decoded the simplest way (whole stream at once). */
function expectedAnswers(stream: Buffer, max: number): Expected[] {
  const { payloads, error } = referenceDecode(stream, max);
  const out: Expected[] = [];
  for (const p of payloads) {
    const parsed = parseFrame(p);
    if (!parsed.ok) return [...out, { error: parsed.error.code }];
    out.push({ msg: parsed.value });
  }
  return error ? [...out, { error }] : out;
}

interface WireResult {
  readonly got: Array<Record<string, unknown>>;
  readonly outcome: 'closed' | 'timeout';
  readonly reset: boolean;
}

/** Sends `stream` over TLS in `chunks` (pausing now and then), half-closes, collects every answer. */
async function sendOverWire(h: Harness, chunks: Buffer[], pauses: boolean[]): Promise<WireResult> {
  const socket = tls.connect({ host: '127.0.0.1', port: h.port, ca: h.ca, minVersion: 'TLSv1.2' });
  socket.setNoDelay(true);
  let reset = false;
  socket.on('error', (err: NodeJS.ErrnoException) => {
    // The server stops reading and closes after a framing error; writes after that meet a reset.
    if (err.code === 'ECONNRESET' || err.code === 'EPIPE') reset = true;
    else throw err;
  });
  const got: Array<Record<string, unknown>> = [];
  const decoder = new FrameDecoder(1 << 24);
  socket.on('data', (chunk: Buffer) => {
    const err = decoder.push(chunk, (p) => {
      const parsed = parseFrame(p);
      got.push(parsed.ok ? parsed.value : { undecodable: parsed.error.code });
    });
    if (err) got.push({ undecodable: err.code });
  });
  const closed = new Promise<'closed'>((resolve) => socket.once('close', () => resolve('closed')));
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  for (const [i, chunk] of chunks.entries()) {
    if (socket.destroyed) break;
    socket.write(chunk);
    if (pauses[i]) await new Promise((r) => setTimeout(r, 1));
  }
  if (!socket.destroyed) socket.end();
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([closed, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 10_000)))]);
  clearTimeout(timer);
  socket.destroy();
  return { got, outcome, reset };
}

// Log lines that mean the server hit a fault rather than a bad request.
const FAULT_MESSAGES = ['handler failed', 'connection failed while handling a read', 'dispatch threw', 'dispatch rejected'];

t.test('mutated schema examples and random bytes over real TLS: one valid answer per frame, no fault, the server stays up', async (t) => {
  // A server of its own: the suites above move the clock until the first session is rotated out.
  const { h, token } = await fuzzHarness(t);
  const rng = new Rng(SEED + 3);
  const MAX = h.app.config.maxFrameBytes;
  const CASES = WIRE_CASES;
  const PARALLEL = 8;
  const failures: string[] = [];
  const outcomes = new Map<string, number>();
  let answered = 0;
  let framingClosed = 0;
  let resets = 0;
  const logStart = h.logs.raw.length;
  const started = Date.now();
  for (let start = 0; start < CASES; start += PARALLEL) {
    // Generate the whole batch first, in order, so the cases depend on the seed alone.
    const batch = [];
    for (let n = start; n < Math.min(CASES, start + PARALLEL); n++) {
      const { stream, label } = makeWireStream(rng, token, MAX);
      const chunks = rng.chunks(stream);
      const pauses = chunks.map(() => rng.chance(0.05));
      batch.push({ n, label, expect: expectedAnswers(stream, MAX), chunks, pauses });
    }
    await Promise.all(
      batch.map(async ({ n, label, expect, chunks, pauses }) => {
        const { got, outcome, reset } = await sendOverWire(h, chunks, pauses);
        if (reset) resets++;
        const where = `stream ${n} [${label.slice(0, 300)}]`;
        if (outcome !== 'closed') {
          failures.push(`${where}: the server never closed (${got.length} of ${expect.length} answers)`);
          return;
        }
        const endsInError = expect.length > 0 && 'error' in expect[expect.length - 1]!;
        // A reset after a framing error can discard answers still in our receive buffer: then only
        // what arrived is judged. Without a framing error nothing may be missing.
        if (got.length < expect.length && !(reset && endsInError)) {
          failures.push(`${where}: ${got.length} answers for ${expect.length} frames`);
        }
        if (got.length > expect.length) failures.push(`${where}: ${got.length - expect.length} answers more than frames`);
        for (const [i, res] of got.slice(0, expect.length).entries()) {
          const e = expect[i]!;
          const key = res.status === 'error' ? String(res.error) : String(res.status);
          outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
          if (res.status === 'error' && res.error === 'E_INTERNAL') failures.push(`${where}: answer ${i} is E_INTERNAL`);
          if ('error' in e) {
            const framing = res.status === 'error' && res.error === e.error && !('id' in res) && h.validate(res as never) === null;
            if (!framing) failures.push(`${where}: answer ${i} should be ${e.error}, got ${JSON.stringify(res).slice(0, 200)}`);
            framingClosed++;
          } else {
            const violation = h.validate(res as never);
            if (violation) failures.push(`${where}: answer ${i} breaks the contract: ${violation}`);
            const v = judge(h, e.msg, res as Response);
            if (!v.ok) failures.push(`${where}: answer ${i}: ${v.why}; request ${JSON.stringify(e.msg).slice(0, 200)}`);
            answered++;
          }
        }
      }),
    );
    if (failures.length > 20) break;
  }
  const faults = h.logs.raw.slice(logStart).map((l) => JSON.parse(l) as LogLine).filter((l) => FAULT_MESSAGES.includes(l.msg ?? '') || l.level >= 50);
  t.same(failures.slice(0, 5), [], `${CASES} TLS streams (seed ${SEED + 3}) answered exactly, in ${Date.now() - started} ms`);
  t.same(faults.slice(0, 3), [], 'the server logged no fault (handler failed, connection failed, dispatch threw, any error line)');
  t.ok(answered > CASES / 2, `requests were answered (${answered})`);
  t.ok(framingClosed > CASES / 10, `streams were closed by framing errors (${framingClosed}; ${resets} with a reset)`);
  if (CASES >= 100) {
    for (const outcome of ['ok', 'authorized', 'E_SCHEMA', 'E_FRAME_INVALID_JSON', 'E_FRAME_TOO_LARGE']) {
      t.ok((outcomes.get(outcome) ?? 0) > 0, `outcome ${outcome} was reached over the wire (${outcomes.get(outcome) ?? 0} times)`);
    }
  }
  const c = await h.connect();
  const hello = await c.hello();
  t.equal(hello.status, 'ok', 'afterwards the server still answers hello');
  const check = await c.check({ token, mac: MAC, request: 'fuzz.after' });
  t.ok(check.status === 'authorized' || check.status === 'renew', `and still knows the session made before the fuzz (${check.status})`);
  c.destroy();
});
