import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import nodemailer, { type Transporter } from 'nodemailer';
import type { Config } from '../config.js';
import type { Clock, Logger, RandomBytes } from '../deps.js';
import { NO_METRICS, type Metrics } from '../ops/metrics.js';

export interface MailMessage {
  readonly to: string;
  readonly subject: string;
  readonly text: string;
}

/** Anything that can deliver a message; tests substitute a recording one where mail is not the point. */
export interface Mailer {
  send(message: MailMessage): Promise<void>;
  close(): void;
}

/** Real SMTP through nodemailer: implicit TLS, required STARTTLS, or plain for local relays. */
export function createSmtpMailer(mail: Config['mail']): Mailer {
  const transport: Transporter = nodemailer.createTransport({
    host: mail.smtpHost,
    port: mail.smtpPort,
    secure: mail.smtpSecurity === 'tls',
    requireTLS: mail.smtpSecurity === 'starttls',
    ignoreTLS: mail.smtpSecurity === 'none',
    auth: mail.smtpUser ? { user: mail.smtpUser, pass: mail.smtpPass } : undefined,
    tls: { rejectUnauthorized: mail.smtpRejectUnauthorized, minVersion: 'TLSv1.2' },
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 20_000,
  });
  return {
    async send(message) {
      await transport.sendMail({ from: mail.from, ...message });
    },
    close() {
      transport.close();
    },
  };
}

/**
 * Development default: each message rendered by nodemailer and written as an .eml file into the
 * outbox folder, so the flow works with no mail server. Never for production: it logs where it wrote.
 */
export function createOutboxMailer(dir: string, from: string, clock: Clock, random: RandomBytes, log: Logger): Mailer {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix' });
  return {
    async send(message) {
      const info = await transport.sendMail({ from, ...message });
      const name = `${new Date(clock()).toISOString().replace(/[:.]/g, '-')}-${random(4).toString('hex')}.eml`;
      const file = path.join(dir, name);
      writeFileSync(file, info.message as Buffer, { mode: 0o600 });
      log.info({ file, to: message.to }, 'mail written to outbox');
    },
    close() {
      transport.close();
    },
  };
}

/**
 * Sends mail in the background with bounded retries. Passcode requests answer before the message is
 * delivered: waiting for SMTP only when the account exists would make the answer's timing tell
 * whether it does.
 */
/** How a queued message's delivery ended. `error` is the last attempt's error message. */
export interface DeliveryResult {
  readonly ok: boolean;
  readonly attempts: number;
  readonly error?: string;
}

export class MailQueue {
  readonly #mailer: Mailer;
  readonly #log: Logger;
  readonly #attempts: number;
  readonly #retryDelayMs: number;
  readonly #inflight = new Set<Promise<void>>();
  readonly #metrics: Metrics;
  sent = 0;
  failed = 0;

  constructor(mailer: Mailer, log: Logger, opts: { attempts?: number; retryDelayMs?: number; metrics?: Metrics } = {}) {
    this.#mailer = mailer;
    this.#log = log;
    this.#metrics = opts.metrics ?? NO_METRICS;
    this.#attempts = opts.attempts ?? 3;
    this.#retryDelayMs = opts.retryDelayMs ?? 1000;
  }

  /** Messages queued or being delivered (retries included) right now: the console's mail queue. */
  get pending(): number {
    return this.#inflight.size;
  }

  /**
   * Runs `fn` on a later turn of the event loop, after the current answer has been written, and
   * counts it as queued mail until it has run, so that `drain()` (tests, shutdown) also waits for
   * mail that is about to be queued.
   */
  later(fn: () => void | Promise<void>): void {
    const job = new Promise<void>((resolve) => setImmediate(resolve))
      .then(fn)
      .catch((err: unknown) => this.#log.error({ err: (err as Error).message }, 'deferred mail work failed'))
      .finally(() => this.#inflight.delete(job));
    this.#inflight.add(job);
  }

  /**
   * Queues `message`; `kind` names it in logs, which never carry the body (it holds the passcode).
   * `onDone` learns how delivery ended (the audit trail records it); it must not throw.
   */
  enqueue(message: MailMessage, kind: string, onDone?: (result: DeliveryResult) => void): void {
    const job = this.#deliver(message, kind)
      .then((result) => onDone?.(result))
      .catch((err: unknown) => this.#log.error({ kind, err: (err as Error).message }, 'mail delivery callback failed'))
      .finally(() => this.#inflight.delete(job));
    this.#inflight.add(job);
  }

  async #deliver(message: MailMessage, kind: string): Promise<DeliveryResult> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#mailer.send(message);
        this.sent++;
        this.#metrics.mail('sent');
        this.#log.info({ kind, to: message.to, attempt }, 'mail sent');
        return { ok: true, attempts: attempt };
      } catch (err) {
        const last = attempt >= this.#attempts;
        this.#log[last ? 'error' : 'warn']({ kind, to: message.to, attempt, err: (err as Error).message }, last ? 'mail failed' : 'mail attempt failed; retrying');
        if (last) {
          this.failed++;
          this.#metrics.mail('failed');
          return { ok: false, attempts: attempt, error: (err as Error).message };
        }
        this.#metrics.mail('retried');
        await new Promise((r) => setTimeout(r, this.#retryDelayMs * attempt).unref());
      }
    }
  }

  /**
   * Resolves when every queued message is delivered or has failed for good, or when `timeoutMs`
   * passed (used at shutdown, which must end within a bound). Returns how many were left. Retry
   * delays do not keep the process alive: a caller that must wait through them without a deadline
   * keeps the process alive itself (the server does, with its listener or shutdown timer).
   */
  async drain(timeoutMs = Infinity): Promise<number> {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'timeout'>((resolve) => {
      if (Number.isFinite(timeoutMs)) timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    try {
      while (this.#inflight.size > 0) {
        if ((await Promise.race([Promise.allSettled([...this.#inflight]), expired])) === 'timeout') {
          this.#log.error({ pending: this.#inflight.size }, 'shutdown: mail still queued was not delivered');
          return this.#inflight.size;
        }
      }
      return 0;
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.#mailer.close();
  }
}

export function passcodeMail(opts: {
  to: string;
  passcode: string;
  expiresAt: number;
  seenIp: string;
  reportedIp: string | null;
  mac: string;
}): MailMessage {
  const expires = new Date(opts.expiresAt).toISOString();
  const reported = opts.reportedIp && opts.reportedIp !== opts.seenIp ? ` (the client reported ${opts.reportedIp})` : '';
  return {
    to: opts.to,
    subject: 'Your Hellwall passcode',
    text: [
      `Your Hellwall passcode is: ${opts.passcode}`,
      '',
      `It expires at ${expires} and can be used once.`,
      `Requested from IP address ${opts.seenIp}${reported}, device MAC ${opts.mac}.`,
      '',
      'If you did not ask for this passcode, someone knows your password: change it and tell your administrator.',
    ].join('\n'),
  };
}
