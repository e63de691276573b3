import https from 'node:https';
import type { Harness } from './harness.js';
import { passcodeFrom } from './smtp-sink.js';

export interface ConsoleResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
  /** Every Set-Cookie line as sent. */
  readonly setCookies: string[];
}

/** An administrator for console tests. */
export const ROOT = { email: 'root@example.com', phone: '+1 555 0199', password: 'root password that is long enough', role: 'admin' };

/**
 * A small HTTPS client for the admin console with a cookie jar (as a browser keeps one, minus the
 * browser): real TLS to the harness's console port, trusting only its certificate.
 */
export class ConsoleClient {
  readonly jar = new Map<string, string>();

  constructor(
    readonly port: number,
    readonly ca: Buffer,
  ) {}

  get origin(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  request(method: string, path: string, opts: { form?: Record<string, string>; headers?: Record<string, string> } = {}): Promise<ConsoleResponse> {
    const body = opts.form ? new URLSearchParams(opts.form).toString() : undefined;
    const cookie = [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: '127.0.0.1',
          port: this.port,
          method,
          path,
          ca: this.ca,
          headers: {
            ...(cookie && { cookie }),
            ...(body !== undefined && { 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(Buffer.byteLength(body)), origin: this.origin }),
            ...opts.headers,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const setCookies = res.headers['set-cookie'] ?? [];
            for (const line of setCookies) {
              const [pair, ...attrs] = line.split(';');
              const [name, value] = [pair!.slice(0, pair!.indexOf('=')), pair!.slice(pair!.indexOf('=') + 1)];
              const expired = attrs.some((a) => /^\s*max-age=0$/i.test(a) || /^\s*expires=Thu, 01 Jan 1970/i.test(a));
              if (expired || value === '') this.jar.delete(name);
              else this.jar.set(name, value);
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), setCookies });
          });
        },
      );
      req.on('error', reject);
      if (body !== undefined) req.write(body);
      req.end();
    });
  }

  get(path: string, headers?: Record<string, string>): Promise<ConsoleResponse> {
    return this.request('GET', path, headers ? { headers } : {});
  }

  post(path: string, form: Record<string, string>, headers?: Record<string, string>): Promise<ConsoleResponse> {
    return this.request('POST', path, { form, ...(headers && { headers }) });
  }

  /** The CSRF token of the first form of a page. */
  static csrf(page: ConsoleResponse): string {
    const m = /name="_csrf" value="([^"]+)"/.exec(page.body);
    if (!m) throw new Error(`no CSRF field in the page (status ${page.status})`);
    return m[1]!;
  }

  /** Step one of the login: the form, then email, phone and password. Returns the passcode mailed. */
  async requestPasscode(h: Harness, user: { email: string; phone: string; password: string }): Promise<{ passcode: string; res: ConsoleResponse }> {
    const form = await this.get('/login');
    const since = h.smtp.messages.length;
    const res = await this.post('/login', { email: user.email, phone: user.phone, password: user.password, _csrf: ConsoleClient.csrf(form) });
    if (res.status !== 303) throw new Error(`login step one answered ${res.status}`);
    return { passcode: passcodeFrom(await h.smtp.waitFor(user.email, since)), res };
  }

  /** The whole login, as an administrator does it; returns the answer to the passcode step. */
  async login(h: Harness, user: { email: string; phone: string; password: string } = ROOT): Promise<ConsoleResponse> {
    const { passcode } = await this.requestPasscode(h, user);
    const page = await this.get('/login/passcode');
    return this.post('/login/passcode', { passcode, _csrf: ConsoleClient.csrf(page) });
  }
}
