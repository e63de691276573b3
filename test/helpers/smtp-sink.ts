import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { generate } from 'selfsigned';
import { SMTPServer } from 'smtp-server';

export interface ReceivedMail {
  readonly from: string;
  readonly to: string[];
  readonly raw: string;
  readonly secure: boolean;
  readonly user: string | undefined;
}

export const SMTP_USER = 'hellwall';
export const SMTP_PASS = 'sink-password';

/**
 * A real SMTP server on 127.0.0.1 (the smtp-server package): STARTTLS with a throwaway
 * certificate and AUTH required, so the service's nodemailer transport has a real conversation.
 */
export class SmtpSink {
  readonly messages: ReceivedMail[] = [];
  #server!: SMTPServer;
  #waiters: Array<() => void> = [];
  port = 0;
  /** Errors of client connections (a peer reset, say): kept, not thrown, for a test that cares. */
  readonly connectionErrors: Error[] = [];
  /** When set, every message is refused with this SMTP reply (to test delivery failures). */
  rejectWith: string | null = null;

  #pems!: { private: string; cert: string };
  #running = false;
  #holder: net.Server | null = null;

  static async start(): Promise<SmtpSink> {
    const sink = new SmtpSink();
    sink.#pems = await generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec', algorithm: 'sha256' });
    await sink.#listen(0);
    return sink;
  }

  async #listen(port: number): Promise<void> {
    const sink = this;
    this.#server = new SMTPServer({
      key: this.#pems.private,
      cert: this.#pems.cert,
      authMethods: ['PLAIN', 'LOGIN'],
      logger: false,
      onAuth(auth, _session, cb) {
        if (auth.username === SMTP_USER && auth.password === SMTP_PASS) cb(null, { user: auth.username });
        else cb(new Error('invalid credentials'));
      },
      onData(stream, session, cb) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          if (sink.rejectWith) {
            cb(new Error(sink.rejectWith));
            return;
          }
          sink.messages.push({
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            to: session.envelope.rcptTo.map((r) => r.address),
            raw: Buffer.concat(chunks).toString('utf8'),
            secure: session.secure,
            user: session.user as string | undefined,
          });
          for (const w of sink.#waiters.splice(0)) w();
          cb();
        });
      },
    });
    // A client that goes away mid-conversation (a server process the test SIGKILLs, a mailer
    // dropped at close) surfaces here as ECONNRESET and the like. Without a listener, SMTPServer
    // re-emits it as an unhandled 'error' and takes the whole test process down, as it once did in
    // test/cluster/renewal's teardown. Mail the tests wait for still arrives or times out there.
    this.#server.on('error', (err: Error) => this.connectionErrors.push(err));
    this.#server.listen(port, '127.0.0.1');
    await once(this.#server.server, 'listening');
    this.port = (this.#server.server.address() as AddressInfo).port;
    this.#running = true;
  }

  /**
   * The SMTP server goes down: every connection to the port is dropped at once until `restart`.
   * The port stays held (by a bare TCP listener) because test files run in parallel, and another
   * file's sink could otherwise be given the freed port and accept our mail.
   */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#holder = net.createServer((socket) => socket.destroy());
    this.#holder.listen(this.port, '127.0.0.1');
    await once(this.#holder, 'listening');
  }

  /** Serves SMTP again on the same port. */
  async restart(): Promise<void> {
    if (this.#running) return;
    await this.#releaseHolder();
    await this.#listen(this.port);
  }

  async #releaseHolder(): Promise<void> {
    const holder = this.#holder;
    this.#holder = null;
    if (holder) await new Promise<void>((resolve) => holder.close(() => resolve()));
  }

  /** Waits for the next message to `to` that arrives after `since` messages, or fails after `timeoutMs`. */
  async waitFor(to: string, since = 0, timeoutMs = 10_000): Promise<ReceivedMail> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.slice(since).find((m) => m.to.includes(to));
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no mail to ${to} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async close(): Promise<void> {
    if (this.#running) {
      this.#running = false;
      await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    }
    await this.#releaseHolder();
  }
}

/** The passcode in a passcode mail. */
export function passcodeFrom(mail: ReceivedMail): string {
  const m = /passcode is: ([A-Z0-9]{6})/.exec(mail.raw);
  if (!m) throw new Error('no passcode in mail');
  return m[1]!;
}
