import cluster from 'node:cluster';
import https from 'node:https';
import path from 'node:path';
import type { AddressInfo, Socket } from 'node:net';
import { constants as cryptoConstants } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import fastifyCookie from '@fastify/cookie';
import fastifyStatic from '@fastify/static';
import { ConsoleSessions } from './console-sessions.js';
import { ConsoleContext, COOKIE_DEVICE, COOKIE_SESSION, refusal, type ConsoleDeps } from './context.js';
import { registerLoginRoutes } from './login-routes.js';
import { registerOverviewPage } from './overview-page.js';
import { registerUsersPage } from './users-page.js';
import { registerSessionsPage } from './sessions-page.js';
import { registerAuditPage } from './audit-page.js';
import { registerMaintenancePage } from './maintenance-page.js';

export type { ConsoleDeps, ConsoleReadinessCheck } from './context.js';

const PUBLIC_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'public');

/**
 * Nothing but this origin's own script, stylesheet and images; no inline script or style, no
 * framing, forms only to this origin. Pages build no markup from strings in the browser, so a
 * stray `<script>` in data could not run even if escaping failed.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': CONSOLE_CSP,
  'strict-transport-security': 'max-age=31536000',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  // Not `no-referrer`: with it, browsers send `Origin: null` on form posts and the origin check
  // could not tell this console's forms from anyone's. No URL leaves for another origin either way.
  'referrer-policy': 'same-origin',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(), payment=(), usb=()',
};

// What a plain-HTTP request to the console port gets: a definite answer, then the connection
// closes. No redirect: it would itself travel in clear text, and teach the habit of typing http.
const PLAIN_HTTP_TEXT = 'This is the Hellwall admin console: it speaks HTTPS only. Open it with https://\n';
const PLAIN_HTTP_REFUSAL = Buffer.from(
  `HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: ${Buffer.byteLength(PLAIN_HTTP_TEXT)}\r\n\r\n${PLAIN_HTTP_TEXT}`,
);
// A connection that sends nothing at all is dropped after this (TLS's own timeouts start later).
const FIRST_BYTE_TIMEOUT_MS = 10_000;
// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE = 0x16;

/**
 * The admin console: an HTTPS server of its own (not the TLS protocol listener: its traffic never
 * touches the token-check path), with the listener's certificate. Pages are HTML made on the
 * server; changes are plain form posts, each through the AdminService.
 */
export class ConsoleServer {
  readonly #app: FastifyInstance;
  readonly #deps: ConsoleDeps;
  #https: https.Server | undefined;

  constructor(deps: ConsoleDeps, tls: { key: Buffer | string; cert: Buffer | string }) {
    this.#deps = deps;
    const sessions = new ConsoleSessions({ clock: deps.clock, random: deps.random, idleMs: deps.config.console.idleSeconds * 1000 });
    const ctx = new ConsoleContext(deps, sessions);
    this.#app = Fastify({
      loggerInstance: ctx.log,
      // Requests are logged where something happens (logins, changes); a page view is in the audit trail.
      logController: new LogController({ disableRequestLogging: true }),
      bodyLimit: 64 * 1024,
      // One listener per process; slow clients must not hold sockets open.
      connectionTimeout: 30_000,
      keepAliveTimeout: 5_000,
      return503OnClosing: true,
      serverFactory: (handler) => {
        const server = https.createServer(
          {
            key: tls.key,
            cert: tls.cert,
            minVersion: 'TLSv1.2',
            honorCipherOrder: true,
            secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION,
          },
          handler,
        );
        refusePlainHttp(server);
        this.#https = server;
        return server;
      },
      // The routes take the default instance type; this one differs only in its server and logger types.
    }) as unknown as FastifyInstance;
    const app = this.#app;
    app.register(fastifyCookie);
    app.register(fastifyStatic, { root: PUBLIC_DIR, prefix: '/static/', index: false, list: false, dotfiles: 'deny', maxAge: 300_000 });
    app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
      const form: Record<string, string> = {};
      // The first value of a repeated field: a form of this console never repeats one.
      for (const [k, v] of new URLSearchParams(body as string)) if (!(k in form)) form[k] = v;
      done(null, form);
    });
    app.addHook('onSend', async (_req, reply, payload) => {
      reply.headers(SECURITY_HEADERS);
      // Pages show operator data: no cache may keep them. Static files may be cached briefly.
      if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
      return payload;
    });
    // Every change is a POST, and none goes further than this without the CSRF token of the cookie
    // it came with (the login's device cookie before login, the session cookie after) and without
    // the browser saying it comes from this origin: refused here, before the form is even validated.
    app.addHook('preValidation', async (req, reply) => {
      if (req.method !== 'POST') return;
      const login = req.url === '/login' || req.url === '/login/passcode';
      const cookie = req.cookies[login ? COOKIE_DEVICE : COOKIE_SESSION];
      const token = (req.body as Record<string, unknown> | undefined)?._csrf;
      if (ctx.sameOrigin(req) && sessions.checkCsrf(login ? 'login' : 'session', cookie, token)) return;
      ctx.log.warn({ event: 'console.csrf', url: req.url, origin: req.headers.origin ?? null }, 'console form refused: not from this console');
      await reply.code(403).type('text/html; charset=utf-8').send(refusal('Form refused', 'This form was not sent from this console page, or it is too old. Open the page again.').text);
    });
    app.setNotFoundHandler((_req, reply) => reply.code(404).type('text/html; charset=utf-8').send(refusal('Not found', 'There is no such page.').text));
    app.setErrorHandler((err: Error & { statusCode?: number; validation?: unknown }, req, reply) => {
      if (err.validation) {
        return reply.code(400).type('text/html; charset=utf-8').send(refusal('Form refused', 'A field of this form was missing or too long.').text);
      }
      // Whatever went wrong stays in the log; the page says nothing about it.
      req.log.error({ err: err.message, url: req.routeOptions.url }, 'console request failed');
      return reply.code(err.statusCode && err.statusCode < 500 ? err.statusCode : 500).type('text/html; charset=utf-8').send(refusal('Something went wrong', 'The server could not do this now. Try again.').text);
    });
    app.get('/', async (_req, reply) => reply.redirect('/overview', 303));
    registerLoginRoutes(app, ctx);
    registerOverviewPage(app, ctx);
    registerUsersPage(app, ctx);
    registerSessionsPage(app, ctx);
    registerAuditPage(app, ctx);
    registerMaintenancePage(app, ctx);
  }

  /**
   * Listens on `host`:`port`. Console sessions live in one process's memory, so among cluster
   * workers (`workers` > 1) exactly one serves the console: each tries to bind the port for itself
   * (`exclusive`, not shared round-robin) and the first wins; the others answer null and serve none.
   * When that worker dies its replacement (started by the primary) takes the port over.
   */
  async listen(port: number, host: string): Promise<AddressInfo | null> {
    try {
      await this.#app.listen({ port, host, exclusive: cluster.isWorker });
    } catch (err) {
      if (!cluster.isWorker || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      this.#deps.log.info({ port }, 'admin console port taken: another worker serves the console');
      return null;
    }
    return this.#app.server.address() as AddressInfo;
  }

  /** A reloaded certificate (SIGHUP): new connections get it, open ones keep theirs. */
  setCertificate(key: Buffer | string, cert: Buffer | string): void {
    this.#https?.setSecureContext({ key, cert, minVersion: 'TLSv1.2', honorCipherOrder: true, secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION });
  }

  async close(): Promise<void> {
    await this.#app.close();
    this.#deps.log.info('console stopped');
  }
}

/**
 * Looks at the first byte of each connection before TLS does: a TLS handshake goes on to the HTTPS
 * server; anything else (a plain-HTTP request) gets PLAIN_HTTP_REFUSAL and is closed.
 */
function refusePlainHttp(server: https.Server): void {
  const tlsListeners = server.listeners('connection') as Array<(socket: Socket) => void>;
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    socket.setTimeout(FIRST_BYTE_TIMEOUT_MS, () => socket.destroy());
    // Paused mode: one byte is read and given back, so the TLS socket starts from the first byte.
    // (Resuming the raw socket after handing it over would race the TLS socket for the data.)
    socket.once('readable', () => {
      socket.setTimeout(0);
      const first = socket.read(1) as Buffer | null;
      if (first === null) {
        socket.destroy();
        return;
      }
      if (first[0] !== TLS_HANDSHAKE) {
        socket.end(PLAIN_HTTP_REFUSAL);
        socket.destroySoon();
        return;
      }
      socket.unshift(first);
      for (const l of tlsListeners) l.call(server, socket);
    });
    socket.on('error', () => socket.destroy());
  });
}
