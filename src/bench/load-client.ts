// Load generator, run as its own process so it does not share an event loop with the server.
// Reads a LoadSpec from $BENCH_SPEC; writes LoadEvent JSON lines to stdout.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import { FrameDecoder, parseFrame } from '../codec/frame-decoder.js';
import { encodeFrame } from '../codec/frame-encoder.js';

export interface LoadSpec {
  readonly port: number;
  /**
   * Several servers (nodes of one cluster): connection i goes to `ports[i % ports.length]`, so
   * each gets an equal share. Absent: every connection goes to `port`.
   */
  readonly ports?: readonly number[];
  readonly caFile: string;
  readonly conns: number;
  readonly inflight: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  /** The request to repeat; the client adds the id. */
  readonly message: Record<string, unknown>;
  /** The response status that counts as success. */
  readonly expect: string;
}

export interface LoadResult {
  /** Responses received inside the measured window. */
  readonly requests: number;
  readonly seconds: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Wrong or missing responses, over the whole run (warm-up and drain included). */
  readonly errors: number;
  /** This process's CPU time over the window, in cores. */
  readonly clientCpu: number;
}

/** 'measure' and 'stop' bracket the window so the orchestrator can sample the server's CPU. */
export type LoadEvent = { event: 'measure' } | { event: 'stop' } | { event: 'result'; result: LoadResult };

interface Recorder {
  measuring: boolean;
  stopped: boolean;
  errors: number;
  readonly latencies: number[];
}

/**
 * One persistent connection keeping exactly `inflight` requests outstanding. Responses come back in
 * request order [P-2.4], so request ids cycle through 0..inflight-1 and the answer to id k is
 * replaced by a new request with id k.
 */
class LoadConnection {
  readonly #socket: tls.TLSSocket;
  readonly #rec: Recorder;
  readonly #ids: string[];
  readonly #expect: string;
  // Every request frame, twice over: the requests replacing any run of consecutive answers are one
  // contiguous slice, so each read costs one write and no allocation.
  readonly #ring: Buffer;
  readonly #offsets: number[];
  readonly #sentAt: Float64Array;
  readonly #decoder = new FrameDecoder(1 << 20);
  #next = 0; // id of the oldest outstanding request
  #closed = false;
  outstanding = 0;

  constructor(socket: tls.TLSSocket, spec: LoadSpec, rec: Recorder) {
    this.#socket = socket;
    this.#rec = rec;
    this.#expect = spec.expect;
    this.#ids = Array.from({ length: spec.inflight }, (_, i) => String(i));
    const frames = this.#ids.map((id) => encodeFrame({ ...spec.message, id }));
    this.#ring = Buffer.concat([...frames, ...frames]);
    this.#offsets = [0];
    for (const frame of [...frames, ...frames]) this.#offsets.push(this.#offsets.at(-1)! + frame.length);
    this.#sentAt = new Float64Array(spec.inflight);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('close', () => this.close());
    this.#send(0, spec.inflight, performance.now());
  }

  /** Requests still unanswered when the connection ends are failures, not just missing samples. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#rec.errors += this.outstanding;
    this.outstanding = 0;
    this.#socket.end();
    setTimeout(() => this.#socket.destroy(), 1000).unref();
  }

  #send(from: number, count: number, now: number): void {
    const n = this.#ids.length;
    for (let i = 0; i < count; i++) this.#sentAt[(from + i) % n] = now;
    this.outstanding += count;
    this.#socket.write(this.#ring.subarray(this.#offsets[from], this.#offsets[from + count]));
  }

  #onData(chunk: Buffer): void {
    if (this.#closed) return;
    // One clock read per chunk: responses read together arrived together.
    const now = performance.now();
    const rec = this.#rec;
    const first = this.#next;
    let count = 0;
    const failure = this.#decoder.push(chunk, (payload) => {
      const parsed = parseFrame(payload);
      const id = this.#next;
      if (!parsed.ok || parsed.value.status !== this.#expect || parsed.value.id !== this.#ids[id]) rec.errors++;
      else if (rec.measuring) rec.latencies.push(now - this.#sentAt[id]!);
      this.#next = (id + 1) % this.#ids.length;
      count++;
    });
    this.outstanding -= count;
    if (failure) this.#socket.destroy();
    else if (count > 0 && !rec.stopped) this.#send(first, count, now);
  }
}

function connect(port: number, ca: Buffer): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, minVersion: 'TLSv1.2', timeout: 10_000 });
    socket.setNoDelay(true);
    socket.once('error', reject);
    socket.once('timeout', () => socket.destroy(new Error('connect timeout')));
    socket.once('secureConnect', () => {
      socket.off('error', reject);
      // From here a failure shows as 'close', where LoadConnection counts what it cost.
      socket.on('error', () => {});
      socket.setTimeout(0);
      resolve(socket);
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Nearest-rank percentile of sorted samples. */
function percentile(sorted: Float64Array, q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
}

export async function runLoad(spec: LoadSpec, emit: (event: LoadEvent) => void): Promise<LoadResult> {
  const ca = readFileSync(spec.caFile);
  const rec: Recorder = { measuring: false, stopped: false, errors: 0, latencies: [] };
  const ports = spec.ports && spec.ports.length > 0 ? spec.ports : [spec.port];
  const sockets = await Promise.all(Array.from({ length: spec.conns }, (_, i) => connect(ports[i % ports.length]!, ca)));
  const conns = sockets.map((socket) => new LoadConnection(socket, spec, rec));

  await sleep(spec.warmupMs);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  rec.measuring = true;
  emit({ event: 'measure' });
  await sleep(spec.durationMs);
  rec.measuring = false;
  rec.stopped = true;
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  emit({ event: 'stop' });

  // Let the last requests come back so they are checked too, but never wait long for them.
  const drainUntil = performance.now() + 2000;
  while (conns.some((c) => c.outstanding > 0) && performance.now() < drainUntil) await sleep(5);
  for (const c of conns) c.close();
  const sorted = Float64Array.from(rec.latencies).sort();
  return {
    requests: sorted.length,
    seconds,
    rps: sorted.length / seconds,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    errors: rec.errors,
    clientCpu: (cpu.user + cpu.system) / 1000 / (seconds * 1000),
  };
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.env.BENCH_SPEC ?? '') as LoadSpec;
  const emit = (event: LoadEvent): void => void process.stdout.write(`${JSON.stringify(event)}\n`);
  // Bounded whatever happens on the other side.
  setTimeout(() => {
    process.stderr.write('load-client: deadline passed\n');
    process.exit(1);
  }, spec.warmupMs + spec.durationMs + 20_000).unref();
  const result = await runLoad(spec, emit);
  emit({ event: 'result', result });
}

main().catch((err: unknown) => {
  process.stderr.write(`load-client: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
