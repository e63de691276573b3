// Child-process entry for the benchmark: `bench-server.js <mode> <dataDir>` (modes: ServerMode), started with
// an IPC channel. It serves until that channel closes, so it cannot outlive the orchestrator.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { buildApp } from '../app.js';
import type { CompiledPolicy } from '../auth/policy.js';
import { HellwallClient } from '../client/client.js';
import { loadConfig, type Config } from '../config.js';
import type { Logger } from '../deps.js';
import { createLogger } from '../log.js';
import type { MailMessage, Mailer } from '../mail/mailer.js';
import { listenerLimits, TlsListener } from '../server/tls-server.js';
import { loadTlsMaterial } from '../tls/tls-files.js';
import { AllowAllPolicy, realisticPolicy } from './bench-policies.js';

/**
 * `hellwall-nolimits`: the same service with the rate limits off, to measure what they cost.
 * `hellwall-allowall`: the policy step of every check does nothing (the floor the policy is measured
 * against); `hellwall-policy50`: a policy file of 50 rules with globs (bench-policies.ts).
 */
export type ServerMode = 'hellwall' | 'hellwall-nolimits' | 'hellwall-allowall' | 'hellwall-policy50' | 'echo';
const MODES: readonly ServerMode[] = ['hellwall', 'hellwall-nolimits', 'hellwall-allowall', 'hellwall-policy50', 'echo'];

/** Sent once the listener is up; for hellwall, with a token obtained over the wire from 127.0.0.1. */
export interface ServerReady {
  readonly type: 'ready';
  readonly port: number;
  readonly certFile: string;
  readonly token?: string;
  readonly mac?: string;
}

/** Answer to the parent's 'cpu' message: CPU time used so far and when, both on this process's clock. */
export interface CpuSample {
  readonly type: 'cpu';
  readonly cpuMs: number;
  readonly atMs: number;
}

interface Running {
  readonly ready: ServerReady;
  close(): Promise<void>;
}

const USER = { email: 'bench@example.com', phone: '+15550100', role: 'user', password: 'bench password 0123456789' };
const MAC = '02:00:5e:00:be:01';

/** The real service, logged in once through its own listener so the token is bound to 127.0.0.1. */
async function startHellwall(config: Config, log: Logger, allowAll: boolean): Promise<Running> {
  let deliver!: (message: MailMessage) => void;
  const delivered = new Promise<MailMessage>((resolve) => (deliver = resolve));
  const mailer: Mailer = { send: async (message) => deliver(message), close: () => {} };
  const app = buildApp({ config, log, mailer });
  // The token service reads `app.policy.current` on every check, as after a SIGHUP reload.
  if (allowAll) (app.policy as { current: CompiledPolicy }).current = new AllowAllPolicy();
  await app.addUser(USER);
  const { address, tls } = await app.listen();
  const client = await HellwallClient.connect({ host: '127.0.0.1', port: address.port, ca: tls.cert });
  try {
    const requested = await client.requestPasscode({ email: USER.email, password: USER.password, mac: MAC });
    if (requested.status !== 'ok') throw new Error(`passcode request failed: ${JSON.stringify(requested)}`);
    const mail = await withTimeout(delivered, 10_000, 'no passcode mail');
    const passcode = /passcode is: (\w+)/.exec(mail.text)?.[1];
    if (!passcode) throw new Error('no passcode in the mail');
    const login = await client.login({ email: USER.email, phone: USER.phone, password: USER.password, passcode, mac: MAC });
    if (login.status !== 'ok') throw new Error(`login failed: ${JSON.stringify(login)}`);
    const check = await client.check({ token: login.token, mac: MAC, request: 'bench.read', data: {} });
    if (check.status !== 'authorized') throw new Error(`token check failed: ${JSON.stringify(check)}`);
    return {
      ready: { type: 'ready', port: address.port, certFile: tls.certFile, token: login.token, mac: MAC },
      close: () => app.close(1000),
    };
  } finally {
    await client.close();
  }
}

/**
 * The ceiling: the same listener (key, certificate, TLS options, Connection) with a dispatch that
 * does no work, so the gap to hellwall is what the service itself costs.
 */
async function startEcho(config: Config, log: Logger): Promise<Running> {
  const tls = await loadTlsMaterial(config, log);
  const listener = new TlsListener({
    key: tls.key,
    cert: tls.cert,
    dispatch: (message) => ({ id: message.id, code: message.code, status: 'ok' }),
    log,
    ...listenerLimits(config),
  });
  const address = await listener.listen(config.port, config.host);
  return { ready: { type: 'ready', port: address.port, certFile: tls.certFile }, close: () => listener.close(1000) };
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function main(): Promise<void> {
  const [mode, dataDir] = process.argv.slice(2);
  const send = process.send?.bind(process);
  if (!MODES.includes(mode as ServerMode) || !dataDir || !send) {
    throw new Error(`usage: bench-server.js <${MODES.join('|')}> <dataDir>, started with an IPC channel`);
  }
  let policyFile = '';
  if (mode === 'hellwall-policy50') {
    policyFile = path.join(dataDir, 'policy.json');
    writeFileSync(policyFile, JSON.stringify(realisticPolicy(), null, 2));
  }
  // An explicit empty env: HELLWALL_* variables of the shell must not change what is measured.
  const config = loadConfig({}, {
      dataDir,
      port: 0,
      host: '127.0.0.1',
      logLevel: 'error',
      tokens: { ttlSeconds: 86400 },
      ops: { port: 0 },
      limits: { enabled: mode !== 'hellwall-nolimits' },
      // Every load-client connection comes from 127.0.0.1.
      maxConnectionsPerIp: 100_000,
      policy: { file: policyFile },
    }, undefined);
  // Errors only, and on stderr: stdout belongs to the orchestrator's report, and the dev-certificate
  // warning is expected here.
  const log = createLogger(config.logLevel, pino.destination(2));
  const server = mode === 'echo' ? await startEcho(config, log) : await startHellwall(config, log, mode === 'hellwall-allowall');
  process.on('message', (message) => {
    if (message !== 'cpu') return;
    const { user, system } = process.cpuUsage();
    send({ type: 'cpu', cpuMs: (user + system) / 1000, atMs: performance.now() } satisfies CpuSample);
  });
  process.once('disconnect', () => {
    void server.close().finally(() => process.exit(0));
  });
  send(server.ready);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench-server: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
