// The bench's `--storm` load: a login storm, run as its own process. Many connections, each from
// its own 127.0.x.y address (none is 127.0.0.1, where the token checks come from), send
// passcode.request and passcode.auth for made-up accounts without pause, which keeps the password
// hashing pool saturated (unknown accounts are hashed like known ones). Reads a StormSpec from
// $BENCH_STORM; writes one 'ready' line once connected, and a 'result' line when its stdin closes.
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { FrameDecoder, parseFrame } from '../codec/frame-decoder.js';
import { encodeFrame } from '../codec/frame-encoder.js';
import { COMMAND_CODES } from '../protocol/messages.gen.js';

export interface StormSpec {
  readonly port: number;
  readonly caFile: string;
  /** Connections, one source address each (127.0.200.1 onwards). */
  readonly conns: number;
  /** Requests kept in flight per connection. */
  readonly inflight: number;
}

export type StormEvent = { event: 'ready' } | { event: 'result'; answers: Record<string, number> };

/** One storm connection: `inflight` requests outstanding, alternately passcode.request and passcode.auth. */
function storm(socket: tls.TLSSocket, n: number, inflight: number, answers: Record<string, number>): void {
  let sent = 0;
  const next = (): Buffer => {
    const i = sent++;
    const email = `storm-${n}-${i}@example.invalid`;
    const mac = '02:00:5e:99:00:01';
    return encodeFrame(
      i % 2 === 0
        ? { code: COMMAND_CODES['passcode.request'], id: String(i), email, password: 'not the password 123', mac }
        : { code: COMMAND_CODES['passcode.auth'], id: String(i), email, phone: '+15550199', password: 'not the password 123', passcode: 'ABC123', mac },
    );
  };
  const decoder = new FrameDecoder(1 << 20);
  const send = (): void => {
    if (!socket.destroyed) socket.write(next());
  };
  socket.on('data', (chunk: Buffer) => {
    decoder.push(chunk, (payload) => {
      const parsed = parseFrame(payload);
      const key = !parsed.ok ? 'bad frame' : parsed.value.status === 'error' ? String(parsed.value.error) : String(parsed.value.status);
      answers[key] = (answers[key] ?? 0) + 1;
      // A refused attempt (address rate, full hashing queue) waits a little, as a client would:
      // the storm is logins keeping the hashing pool busy, not a flood of refusals.
      if (key === 'E_RATE_LIMITED' || key === 'E_BUSY') setTimeout(send, 100);
      else send();
    });
  });
  for (let i = 0; i < inflight; i++) socket.write(next());
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.env.BENCH_STORM ?? '') as StormSpec;
  const ca = readFileSync(spec.caFile);
  const answers: Record<string, number> = {};
  const sockets = await Promise.all(
    Array.from(
      { length: spec.conns },
      (_, n) =>
        new Promise<tls.TLSSocket>((resolve, reject) => {
          const localAddress = `127.0.${200 + Math.floor(n / 250)}.${1 + (n % 250)}`;
          const socket = tls.connect({ host: '127.0.0.1', port: spec.port, ca, ...{ localAddress } } as tls.ConnectionOptions);
          socket.once('error', reject);
          socket.once('secureConnect', () => {
            socket.off('error', reject);
            socket.on('error', () => {});
            resolve(socket);
          });
        }),
    ),
  );
  sockets.forEach((socket, n) => storm(socket, n, spec.inflight, answers));
  process.stdout.write(`${JSON.stringify({ event: 'ready' } satisfies StormEvent)}\n`);
  process.stdin.resume();
  process.stdin.once('end', () => {
    for (const s of sockets) s.destroy();
    process.stdout.write(`${JSON.stringify({ event: 'result', answers } satisfies StormEvent)}\n`);
    process.exit(0);
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`storm-client: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
