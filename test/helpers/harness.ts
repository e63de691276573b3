import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildApp, createApp, type App } from '../../src/app.js';
import { HellwallClient, type ClientOptions } from '../../src/client/client.js';
import type { PasscodeAuthResponse } from '../../src/protocol/messages.gen.js';
import { loadConfig, type ConfigInput } from '../../src/config.js';
import { sharedProtocol } from './shared-protocol.js';
import { createLogger } from '../../src/log.js';
import type { Mailer } from '../../src/mail/mailer.js';
import type { AuditQuery, AuditRecord } from '../../src/store/store.js';
import { responseViolation } from './conformance.js';
import type { TlsMaterial } from '../../src/tls/tls-files.js';
import { LogSink } from './log-sink.js';
import { passcodeFrom, SMTP_PASS, SMTP_USER, SmtpSink } from './smtp-sink.js';

/** Test time: starts at a fixed instant and moves only when told. */
export class FakeClock {
  now = Date.UTC(2026, 10, 21, 12, 0, 0);
  readonly fn = (): number => this.now;
  advance(ms: number): void {
    this.now += ms;
  }
}

// Light scrypt so suites that hash often stay quick; production parameters are tested in
// test/primitives/password-policy.test.ts and used by every process-level test.
export const TEST_SCRYPT = { ln: 10, r: 8, p: 1 };

export const ALICE = {
  email: 'alice@example.com',
  phone: '+1 555 0100',
  password: 'correct horse battery staple',
  role: 'user',
};
export const MAC = '00:1a:2b:3c:4d:5e';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface Harness {
  readonly app: App;
  readonly port: number;
  /** The health and metrics listener's port (0 when disabled). */
  readonly opsPort: number;
  /** The admin console's HTTPS port (0 when disabled). */
  readonly consolePort: number;
  readonly ca: Buffer;
  /** The server's certificate and key (tests that stand up a fake peer reuse them). */
  readonly tls: TlsMaterial;
  readonly clock: FakeClock;
  readonly smtp: SmtpSink;
  readonly logs: LogSink;
  readonly dataDir: string;
  connect(opts?: Partial<ClientOptions>): Promise<HellwallClient>;
  /** passcode.request, then the passcode as received by the SMTP sink. */
  requestPasscode(client: HellwallClient, user?: typeof ALICE, mac?: string): Promise<string>;
  /** The whole seed flow: passcode by SMTP, then login; returns the login response. */
  login(client: HellwallClient, user?: typeof ALICE, mac?: string): Promise<PasscodeAuthResponse>;
  /**
   * What is wrong with a response under the contract, or null. Every client from `connect` applies
   * it to every response it receives, so a response that breaks the contract fails its test.
   */
  validate(response: { status: string; code?: number }): string | null;
  /** The audit trail as stored, newest first, after writing what waits for the next group commit. */
  auditRows(query?: Partial<AuditQuery>): Promise<AuditRecord[]>;
  /** How many responses `connect`'s clients have checked (a test can prove the check ran). */
  readonly checked: number;
}

/**
 * A real server for one test: TLS on 127.0.0.1:0, its own SQLite file in a temp directory, mail
 * over SMTP (STARTTLS + AUTH) to a real smtp-server, a fake clock and a log sink at trace level.
 */
export async function startHarness(
  t: Teardown,
  opts: {
    config?: ConfigInput;
    mailer?: Mailer;
    users?: Array<typeof ALICE>;
    /** A PostgreSQL URL (test/helpers/postgres.ts): the app opens it as `store.url` says. */
    storeUrl?: string;
    /** scrypt parameters (default TEST_SCRYPT); production ones where a test needs slow hashes. */
    scrypt?: typeof TEST_SCRYPT;
  } = {},
): Promise<Harness> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-test-'));
  const smtp = await SmtpSink.start();
  const clock = new FakeClock();
  const logs = new LogSink();
  const config = loadConfig({}, {
    dataDir,
    port: 0,
    logLevel: 'trace',
    // A free port: test files run in parallel, and the default 9464 would collide.
    ops: { port: 0 },
    // The admin console on a free port too (test/console/ uses it; elsewhere it stands by).
    console: { port: 0 },
    // Tests make many attempts from 127.0.0.1 on a clock that does not move; the limits have tests
    // of their own (test/integration/throttle.test.ts), which set them.
    limits: {
      ipPasscodeRequestsPerMinute: 1_000_000,
      ipLoginsPerMinute: 1_000_000,
      ipFailedChecksPerMinute: 1_000_000,
      freeFailures: 1_000_000,
      passcodesPerHour: 10_000,
    },
    // The new-device alert mails after every first login from a MAC or address: tests that log in
    // twice and then wait for "the next mail" would race it. Its own tests set `alerts` themselves.
    alerts: { newDevice: false },
    mail: {
      smtpHost: '127.0.0.1',
      smtpPort: smtp.port,
      smtpSecurity: 'starttls',
      smtpUser: SMTP_USER,
      smtpPass: SMTP_PASS,
      // The sink's certificate is a throwaway self-signed one.
      smtpRejectUnauthorized: false,
    },
    ...(opts.storeUrl && { store: { url: opts.storeUrl } }),
    ...opts.config,
  }, undefined);
  const appDeps = {
    config,
    log: createLogger('trace', logs),
    clock: clock.fn,
    scrypt: opts.scrypt ?? TEST_SCRYPT,
    mailRetryDelayMs: 10,
    protocol: sharedProtocol(),
    ...(opts.mailer && { mailer: opts.mailer }),
  };
  const app = opts.storeUrl ? await createApp(appDeps) : buildApp(appDeps);
  for (const user of opts.users ?? [ALICE]) await app.addUser(user);
  const { address, tls, ops, console: adminConsole } = await app.listen();
  const clients: HellwallClient[] = [];
  let checked = 0;
  t.teardown(async () => {
    for (const c of clients) c.destroy();
    await app.close(1000);
    await smtp.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const h: Harness = {
    app,
    port: address.port,
    opsPort: ops?.port ?? 0,
    consolePort: adminConsole?.port ?? 0,
    ca: tls.cert,
    tls,
    clock,
    smtp,
    logs,
    dataDir,
    get checked() {
      return checked;
    },
    async connect(more = {}) {
      const client = await HellwallClient.connect({
        host: '127.0.0.1',
        port: address.port,
        ca: tls.cert,
        inspect: (response) => {
          checked++;
          return h.validate(response);
        },
        ...more,
      });
      clients.push(client);
      return client;
    },
    async requestPasscode(client, user = ALICE, mac = MAC) {
      const since = smtp.messages.length;
      const res = await client.requestPasscode({ email: user.email, password: user.password, mac });
      if (res.status !== 'ok') throw new Error(`passcode request failed: ${JSON.stringify(res)}`);
      // An alert to the same operator (a new sign-in, say) may arrive first: the passcode mail is
      // the next one that holds a passcode.
      for (let from = since; ; ) {
        const mail = await smtp.waitFor(user.email, from);
        if (/passcode is: /.test(mail.raw)) return passcodeFrom(mail);
        from = smtp.messages.indexOf(mail) + 1;
      }
    },
    async login(client, user = ALICE, mac = MAC) {
      const passcode = await h.requestPasscode(client, user, mac);
      const res = await client.login({ email: user.email, phone: user.phone, password: user.password, passcode, mac });
      if (res.status !== 'ok') throw new Error(`login failed: ${JSON.stringify(res)}`);
      return res;
    },
    validate(response) {
      return responseViolation(app.protocol, response);
    },
    async auditRows(query = {}) {
      await app.audit.flush();
      return app.store.queryAudit({ limit: 1000, ...query });
    },
  };
  return h;
}
