import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AuditAction, AuditSink } from '../audit/audit-log.js';
import type { Config } from '../config.js';
import type { Clock, Logger, RandomBytes } from '../deps.js';
import { ServiceError, StoreFailure } from '../errors.js';
import type { MailQueue } from '../mail/mailer.js';
import { normalizeIp } from '../net/ip.js';
import type { Housekeeper } from '../ops/housekeeper.js';
import type { Actor, AdminService } from '../services/admin-service.js';
import type { DeviceService } from '../services/device-service.js';
import type { PasscodeService } from '../services/passcode-service.js';
import type { SessionService } from '../services/session-service.js';
import type { Store } from '../store/store.js';
import type { ConsoleSession, ConsoleSessions } from './console-sessions.js';
import { html, type Html } from './html.js';
import { document, type Notice, type Viewer } from './layout.js';


/** One readiness check, as /readyz runs them: a reason when not ready, null when ready. */
export interface ConsoleReadinessCheck {
  readonly name: string;
  check(): string | null | Promise<string | null>;
}

/** What the console uses: the services the wire and the CLI use, and a few facts for the overview. */
export interface ConsoleDeps {
  readonly config: Pick<Config, 'console' | 'dataDir' | 'tokens' | 'passcodes' | 'admin'>;
  readonly log: Logger;
  readonly clock: Clock;
  readonly random: RandomBytes;
  readonly passcodes: PasscodeService;
  readonly sessions: SessionService;
  readonly admin: AdminService;
  /** An operator's known devices on their page, as admin.user.devices lists them. */
  readonly devices: Pick<DeviceService, 'listFor'>;
  readonly store: Store;
  readonly housekeeper: Pick<Housekeeper, 'runOnce'>;
  readonly mail: Pick<MailQueue, 'sent' | 'failed' | 'pending'>;
  readonly audit: AuditSink;
  readonly readiness: readonly ConsoleReadinessCheck[];
  /** The roles the policy in force declares (the role picker offers these). */
  readonly roles: () => readonly string[];
}

export const COOKIE_SESSION = '__Host-hw_session';
export const COOKIE_LOGIN = '__Host-hw_login';
export const COOKIE_DEVICE = '__Host-hw_device';

/**
 * Every cookie the console sets: `__Host-` names (the browser keeps them to this host and path `/`,
 * over HTTPS only), HttpOnly (no script reads them), SameSite=Strict (no other site's page sends
 * them along).
 */
export const COOKIE_FLAGS = { path: '/', httpOnly: true, secure: true, sameSite: 'strict' } as const;

/** An administrator behind a request: the actor the AdminService records, and their console session. */
export interface AdminRequest {
  readonly actor: Actor;
  readonly session: ConsoleSession;
  readonly viewer: Viewer;
}

/** The address the request came from, canonical as the TLS listener writes it (no proxy is trusted here). */
export function clientIp(req: FastifyRequest): string {
  return normalizeIp(req.socket.remoteAddress);
}

export class ConsoleContext {
  /** The console's logger (the services take a pino logger; fastify's request logger is not one). */
  readonly log: Logger;

  constructor(
    readonly deps: ConsoleDeps,
    readonly sessions: ConsoleSessions,
  ) {
    this.log = deps.log.child({ component: 'console' });
  }

  /**
   * The administrator behind a request, authorized now through AdminService.authorize (token,
   * device and address as at login; role admin), recorded as `console:<email>`. Answers null after
   * sending the way out (the login page, or a refusal) when there is none.
   */
  async admin(req: FastifyRequest, reply: FastifyReply, action: AuditAction): Promise<AdminRequest | null> {
    const sid = req.cookies[COOKIE_SESSION];
    const session = this.sessions.use(sid);
    if (!session || sid === undefined) {
      if (sid !== undefined) reply.clearCookie(COOKIE_SESSION, COOKIE_FLAGS);
      await reply.redirect(sid === undefined ? '/login' : '/login?ended=1', 303);
      return null;
    }
    let actor: Actor;
    try {
      actor = await this.deps.admin.authorize({ token: session.token, mac: session.mac, seenIp: clientIp(req) }, action, this.log);
    } catch (err) {
      if (!(err instanceof ServiceError) || (err.kind !== 'unauthenticated' && err.kind !== 'forbidden')) throw err;
      this.sessions.end(sid);
      reply.clearCookie(COOKIE_SESSION, COOKIE_FLAGS);
      if (err.kind === 'unauthenticated') {
        await reply.redirect('/login?ended=1', 303);
      } else {
        await reply.code(403).type('text/html; charset=utf-8').send(refusal('Administrators only', 'This console is for the admin role only.').text);
      }
      return null;
    }
    return {
      actor: { ...actor, name: `console:${session.email}` },
      session,
      viewer: { email: session.email, csrf: this.sessions.csrf('session', sid), idleSeconds: this.deps.config.console.idleSeconds },
    };
  }

  /**
   * The administrator behind a form post that changes something: refused (403, nothing done) unless
   * it passes `sameOrigin` and carries this session's CSRF token; then as `admin`.
   */
  async change(req: FastifyRequest, reply: FastifyReply, action: AuditAction): Promise<AdminRequest | null> {
    const body = (req.body ?? {}) as Record<string, unknown>;
    if (!this.sameOrigin(req) || !this.sessions.checkCsrf('session', req.cookies[COOKIE_SESSION], body._csrf)) {
      this.log.warn({ event: 'console.csrf', action, origin: req.headers.origin ?? null }, 'console form refused: not from this console');
      await sendPage(reply, refusal('Form refused', 'This form was not sent from this console page, or it is too old. Open the page again.'), 403);
      return null;
    }
    return this.admin(req, reply, action);
  }

  /**
   * Whether a change may go ahead: the form carries the CSRF token of this session's cookie, and the
   * browser says the request comes from this origin (Origin and Fetch Metadata, where sent).
   */
  sameOrigin(req: FastifyRequest): boolean {
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `https://${req.headers.host ?? ''}`) return false;
    const site = req.headers['sec-fetch-site'];
    return site === undefined || site === 'same-origin';
  }
}

/** A page for refusals (no session, wrong role, a forged form): nothing about the account. */
export function refusal(title: string, text: string): Html {
  return document(title, html`<main id="main" class="narrow"><h1>${title}</h1><p>${text}</p><p><a href="/login">Log in</a></p></main>`);
}

export function sendPage(reply: FastifyReply, page: Html, code = 200): FastifyReply {
  return reply.code(code).type('text/html; charset=utf-8').send(page.text);
}

/**
 * What a refused action shows: the service's own message (written to be shown: it never carries a
 * secret or says more than the caller may know), or that the database is busy. Anything else is a
 * fault and goes to the error handler.
 */
export function noticeFor(err: unknown): Notice {
  if (err instanceof ServiceError) return { kind: 'error', text: err.message };
  if (err instanceof StoreFailure) return { kind: 'error', text: 'The database is busy or unreachable: try again in a moment.' };
  throw err;
}
