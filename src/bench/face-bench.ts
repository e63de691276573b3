// `npm run bench:face`: face verifications per second and their latency, and token checks per second
// against the real server with and without face verifications running in the same process. The
// point of the worker pool is the last column: inference must not take the event loop from token
// checks. Needs packages/face (`npm run face:install`). Usage: face-bench.js [--duration <s>]
// [--workers <n>] [--json]
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { buildApp } from '../app.js';
import { HellwallClient } from '../client/client.js';
import { loadConfig } from '../config.js';
import { createLogger } from '../log.js';
import { COMMAND_CODES } from '../protocol/messages.gen.js';
import { defaultFacePackageDir, loadFacePackage } from '../services/face-engine.js';
import { sameFace } from '../services/face-match.js';
import { FacePool } from '../services/face-pool.js';
import { FACE_MAX_SIDE, FACE_MIN_CONFIDENCE } from '../services/face-service.js';
import type { LoadEvent, LoadResult, LoadSpec } from './load-client.js';

const CLIENT_JS = fileURLToPath(new URL('./load-client.js', import.meta.url));
const USER = { email: 'bench@example.com', phone: '+15550100', password: 'bench passphrase of some length', role: 'user' };
const MAC = '00:1a:2b:3c:4d:5e';
const THRESHOLD = 0.4;

interface Rgb {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}
interface Augment {
  decodeJpeg(bytes: Uint8Array): Rgb;
  encodeJpeg(img: Rgb, quality?: number): Buffer;
  crop(img: Rgb, x: number, y: number, width: number, height: number): Rgb;
  brightness(img: Rgb, k: number): Rgb;
}

function runLoad(spec: LoadSpec): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLIENT_JS], { env: { ...process.env, BENCH_SPEC: JSON.stringify(spec) }, stdio: ['ignore', 'pipe', 'inherit'] });
    let result: LoadResult | undefined;
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const e = JSON.parse(line) as LoadEvent;
      if (e.event === 'result') result = e.result;
    });
    child.once('exit', (code) => (result ? resolve(result) : reject(new Error(`load client exited with ${code}`))));
  });
}

async function passcodeFromOutbox(dataDir: string): Promise<string> {
  const outbox = path.join(dataDir, 'outbox');
  for (let i = 0; i < 200; i++) {
    const files = existsSync(outbox) ? readdirSync(outbox).filter((f) => f.endsWith('.eml')) : [];
    const code = files.length > 0 ? /passcode is: ([A-Z0-9]{6})/.exec(readFileSync(path.join(outbox, files[0]!), 'utf8'))?.[1] : undefined;
    if (code) return code;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no passcode in the outbox');
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Verifications back to back from `concurrency` loops until `until`; their latencies in ms. */
async function verifyLoop(pool: FacePool, probe: Buffer, template: Float32Array, concurrency: number, until: number): Promise<{ latencies: number[]; matched: number; busy: number }> {
  const latencies: number[] = [];
  let matched = 0;
  let busy = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        const t0 = performance.now();
        try {
          const r = await pool.describe(probe);
          latencies.push(performance.now() - t0);
          if (r.ok && sameFace(r.descriptor, template, THRESHOLD)) matched++;
        } catch {
          busy++;
        }
      }
    }),
  );
  return { latencies: latencies.sort((a, b) => a - b), matched, busy };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { duration: { type: 'string', default: '10' }, workers: { type: 'string', default: '1' }, json: { type: 'boolean', default: false } } });
  const seconds = Number(values.duration);
  const workers = Number(values.workers);
  const faceDir = defaultFacePackageDir();
  const loaded = await loadFacePackage(faceDir);
  if (!loaded.ok) {
    process.stderr.write(`face bench: ${loaded.reason}\n`);
    process.exit(2);
  }
  const aug = (await import(pathToFileURL(path.join(faceDir, 'augment.mjs')).href)) as Augment;
  const { samplePaths } = (await import(pathToFileURL(path.join(faceDir, 'index.mjs')).href)) as { samplePaths(): string[] };
  const photo = aug.decodeJpeg(readFileSync(samplePaths()[0]!));
  // The first person of sample1.jpg with some context (README "Face factor" measures the same cut).
  const face = aug.crop(photo, 414 - 107, 355 - 143, 178 * 2.2, 239 * 2.2);
  const enrolled = aug.encodeJpeg(face, 85);
  const probe = aug.encodeJpeg(aug.brightness(face, 1.15), 85);

  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-face-bench-'));
  const log = createLogger('error');
  const config = loadConfig({}, { dataDir, port: 0, logLevel: 'error', ops: { enabled: false }, console: { enabled: false }, limits: { enabled: false } });
  const app = buildApp({ config, log });
  const pool = await FacePool.start({
    workerUrl: loaded.pkg.workerUrl,
    workers,
    queueMax: 64,
    engine: { minConfidence: FACE_MIN_CONFIDENCE, minFacePixels: 80, maxPixels: 4_000_000, maxSide: FACE_MAX_SIDE },
    log,
  });
  try {
    await app.addUser(USER);
    const { address, tls } = await app.listen();
    const caFile = path.join(dataDir, 'bench-ca.pem');
    writeFileSync(caFile, tls.cert);
    const client = await HellwallClient.connect({ host: '127.0.0.1', port: address.port, ca: tls.cert });
    await client.requestPasscode({ email: USER.email, password: USER.password, mac: MAC });
    const passcode = await passcodeFromOutbox(dataDir);
    const login = await client.login({ email: USER.email, phone: USER.phone, password: USER.password, passcode, mac: MAC });
    if (login.status !== 'ok') throw new Error(`login failed: ${JSON.stringify(login)}`);
    await client.close();

    const first = await pool.describe(enrolled);
    if (!first.ok) throw new Error(`the bench image was refused: ${first.code}`);
    const template = first.descriptor;
    const spec: LoadSpec = {
      port: address.port,
      caFile,
      conns: 16,
      inflight: 32,
      warmupMs: 1000,
      durationMs: seconds * 1000,
      message: { code: COMMAND_CODES['token.check'], token: login.token, mac: MAC, request: 'bench.read', data: {} },
      expect: 'authorized',
    };

    const alone = await verifyLoop(pool, probe, template, workers + 1, performance.now() + seconds * 1000);
    const checksAlone = await runLoad(spec);
    const during = verifyLoop(pool, probe, template, workers + 1, performance.now() + (seconds + 2) * 1000);
    const checksDuring = await runLoad(spec);
    const mixed = await during;

    const row = (name: string, v: { latencies: number[]; matched: number; busy: number }, secs: number) => ({
      name,
      verificationsPerSecond: +(v.latencies.length / secs).toFixed(2),
      p50Ms: Math.round(percentile(v.latencies, 50)),
      p99Ms: Math.round(percentile(v.latencies, 99)),
      matched: `${v.matched}/${v.latencies.length}`,
      busy: v.busy,
    });
    const result = {
      workers,
      cores: os.availableParallelism(),
      face: [row('verifications alone', alone, seconds), row('verifications during token checks', mixed, seconds + 2)],
      tokenChecks: {
        alone: { rps: Math.round(checksAlone.rps), p99Ms: +checksAlone.p99Ms.toFixed(2), errors: checksAlone.errors },
        duringVerifications: { rps: Math.round(checksDuring.rps), p99Ms: +checksDuring.p99Ms.toFixed(2), errors: checksDuring.errors },
      },
    };
    if (values.json) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } else {
      process.stdout.write(`face bench: ${workers} worker(s), ${result.cores} cores, ${seconds} s per run\n\n`);
      process.stdout.write('| run | verifications/s | p50 ms | p99 ms | matched |\n| --- | --- | --- | --- | --- |\n');
      for (const r of result.face) process.stdout.write(`| ${r.name} | ${r.verificationsPerSecond} | ${r.p50Ms} | ${r.p99Ms} | ${r.matched} |\n`);
      process.stdout.write('\n| token checks (16 conns x 32 in flight) | checks/s | p99 ms | errors |\n| --- | --- | --- | --- |\n');
      process.stdout.write(`| alone | ${result.tokenChecks.alone.rps} | ${result.tokenChecks.alone.p99Ms} | ${result.tokenChecks.alone.errors} |\n`);
      process.stdout.write(`| while verifications run | ${result.tokenChecks.duringVerifications.rps} | ${result.tokenChecks.duringVerifications.p99Ms} | ${result.tokenChecks.duringVerifications.errors} |\n`);
    }
  } finally {
    await pool.close();
    await app.close(1000);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`face bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
