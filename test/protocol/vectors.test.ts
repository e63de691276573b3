import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import t from 'tap';
import { FrameDecoder, parseFrame } from '../../src/codec/frame-decoder.js';
import { encodeFrame } from '../../src/codec/frame-encoder.js';
import { PROTOCOL_DIR } from '../../src/protocol/registry.js';
import { startHarness } from '../helpers/harness.js';
import { ROOT } from '../helpers/root.js';

// Runs protocol/vectors/ the way a client author in another language would: the decoder vectors
// against our frame decoder, the exchange vectors against a real server over TLS. The Python
// suite (test/interop/test_vectors.py) runs the same files.

interface DecoderVector {
  name: string;
  rule: string;
  maxFrameBytes: number;
  bytes: string;
  results: Array<{ object: Record<string, unknown> } | { error: string }>;
  incomplete: boolean;
}
interface Expectation {
  match: Record<string, unknown>;
  absent?: string[];
}
interface ExchangeVector {
  name: string;
  rule: string;
  send: string;
  expect: Expectation[];
  then: 'open' | 'close';
}

const read = <T>(file: string): T => JSON.parse(readFileSync(path.join(PROTOCOL_DIR, 'vectors', file), 'utf8')) as T;
const decoderFile = read<{ vectors: DecoderVector[] }>('decoder.json');
const exchangeFile = read<{ server: { maxFrameBytes: number; maxInflight: number; passcodeTtlSeconds: number }; vectors: ExchangeVector[] }>('exchanges.json');
const unhex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** Decodes a stream delivered as the given chunks, the way the server and client both do. */
function decode(chunks: Buffer[], maxFrameBytes: number): { results: DecoderVector['results']; incomplete: boolean } {
  const decoder = new FrameDecoder(maxFrameBytes);
  const results: DecoderVector['results'] = [];
  let stopped = false;
  for (const chunk of chunks) {
    if (stopped) break;
    const err = decoder.push(chunk, (payload) => {
      if (stopped) return false;
      const parsed = parseFrame(payload);
      if (parsed.ok) results.push({ object: parsed.value });
      else {
        results.push({ error: parsed.error.code });
        stopped = true;
        return false;
      }
      return true;
    });
    if (err) {
      results.push({ error: err.code });
      stopped = true;
    }
  }
  return { results, incomplete: !stopped && decoder.bufferedBytes > 0 };
}

t.test('the vector files are generated from scripts/gen-vectors.mjs and current', async (t) => {
  t.equal(execFileSync(process.execPath, [path.join(ROOT, 'scripts/gen-vectors.mjs'), '--check'], { encoding: 'utf8' }), '');
});

t.test('decoder vectors, however the stream is split', async (t) => {
  t.ok(decoderFile.vectors.length >= 30);
  for (const v of decoderFile.vectors) {
    const bytes = unhex(v.bytes);
    const expected = { results: v.results, incomplete: v.incomplete };
    t.same(decode([bytes], v.maxFrameBytes), expected, `${v.name} [${v.rule}]: whole`);
    t.same(decode([...bytes].map((b) => Buffer.from([b])), v.maxFrameBytes), expected, `${v.name}: a byte at a time`);
    const splits: string[] = [];
    for (let i = 1; i < bytes.length; i++) {
      const got = decode([bytes.subarray(0, i), bytes.subarray(i)], v.maxFrameBytes);
      if (JSON.stringify(got) !== JSON.stringify(expected)) splits.push(`at ${i}: ${JSON.stringify(got)}`);
    }
    t.same(splits, [], `${v.name}: split at every position`);
  }
});

t.test('decoder vectors cover every framing error the registry defines', async (t) => {
  const registry = read<{ errors: Array<{ code: string; closes: boolean }> }>('../errors.json');
  const produced = new Set(decoderFile.vectors.flatMap((v) => v.results.flatMap((r) => ('error' in r ? [r.error] : []))));
  for (const e of registry.errors.filter((e) => e.closes)) t.ok(produced.has(e.code), `${e.code} has a decoder vector`);
});

/** Sends a vector's bytes on a fresh connection; collects responses until `count` arrived or the server closed. */
function exchange(port: number, ca: Buffer, bytes: Buffer, count: number): Promise<{ responses: Array<Record<string, unknown>>; closed: boolean; socket: tls.TLSSocket }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, checkServerIdentity: () => undefined });
    const decoder = new FrameDecoder(1 << 20);
    const responses: Array<Record<string, unknown>> = [];
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      socket.removeAllListeners('data');
      resolve({ responses, closed, socket });
    };
    socket.once('secureConnect', () => socket.write(bytes));
    socket.on('data', (chunk: Buffer) => {
      const err = decoder.push(chunk, (payload) => {
        const parsed = parseFrame(payload);
        responses.push(parsed.ok ? parsed.value : { undecodable: parsed.error.code });
      });
      if (err) reject(new Error(`server sent bad framing: ${err.message}`));
      // For `open` vectors wait a moment past the expected count: an extra answer must show up.
      if (responses.length >= count) setTimeout(() => finish(false), 50);
    });
    socket.once('end', () => finish(true));
    socket.once('close', () => finish(true));
    socket.once('error', reject);
  });
}

function mismatch(response: Record<string, unknown> | undefined, e: Expectation): string | null {
  if (!response) return 'missing';
  for (const [key, value] of Object.entries(e.match)) {
    if (JSON.stringify(response[key]) !== JSON.stringify(value)) return `${key}: expected ${JSON.stringify(value)}, got ${JSON.stringify(response[key])}`;
  }
  for (const key of e.absent ?? []) if (key in response) return `${key} must be absent`;
  return null;
}

t.test('exchange vectors against a real server', async (t) => {
  const h = await startHarness(t, { users: [] });
  t.equal(h.app.config.maxFrameBytes, exchangeFile.server.maxFrameBytes, 'server runs the limits the vectors assume');
  t.equal(h.app.config.maxInflight, exchangeFile.server.maxInflight);
  t.equal(h.app.config.passcodes.ttlSeconds, exchangeFile.server.passcodeTtlSeconds);
  t.ok(exchangeFile.vectors.length >= 25);
  for (const v of exchangeFile.vectors) {
    const { responses, closed, socket } = await exchange(h.port, h.ca, unhex(v.send), v.expect.length);
    t.equal(responses.length, v.expect.length, `${v.name} [${v.rule}]: ${v.expect.length} response(s), got ${JSON.stringify(responses)}`);
    v.expect.forEach((e, i) => t.equal(mismatch(responses[i], e), null, `${v.name}: response ${i + 1}`));
    for (const r of responses) t.equal(h.validate(r as never), null, `${v.name}: response follows the contract`);
    if (v.then === 'close') {
      t.ok(closed, `${v.name}: the server closed the connection`);
    } else {
      t.notOk(closed, `${v.name}: the connection stayed open`);
      const probe = await new Promise<Record<string, unknown>>((resolve, reject) => {
        const decoder = new FrameDecoder(1 << 20);
        socket.on('data', (chunk: Buffer) => {
          decoder.push(chunk, (payload) => {
            const parsed = parseFrame(payload);
            if (parsed.ok) resolve(parsed.value);
          });
        });
        socket.once('close', () => reject(new Error('closed before the probe was answered')));
        socket.write(encodeFrame({ code: 0, id: 'probe' }));
      });
      t.match(probe, { id: 'probe', code: 0, status: 'ok' }, `${v.name}: still usable`);
    }
    socket.destroy();
  }
});

t.test('exchange vectors cover every framing and schema error the README defines', async (t) => {
  const readme = readFileSync(path.join(PROTOCOL_DIR, 'README.md'), 'utf8');
  const registry = read<{ errors: Array<{ code: string; rule: string }> }>('../errors.json');
  const produced = new Set(exchangeFile.vectors.flatMap((v) => v.expect.map((e) => e.match.error).filter(Boolean)));
  // Framing (P-1.x) and request-shape (P-2.2, P-2.3) errors are what a vector can provoke on any server.
  const wanted = registry.errors.filter((e) => /^P-1\.|^P-2\.[23]$/.test(e.rule));
  t.ok(wanted.length >= 7);
  for (const e of wanted) {
    t.match(readme, `\`${e.code}\``, `${e.code} is in the README`);
    t.ok(produced.has(e.code), `${e.code} has an exchange vector`);
  }
});
