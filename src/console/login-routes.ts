import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ServiceError } from '../errors.js';
import type { PasscodeService } from '../services/passcode-service.js';
import { normalizeEmail } from '../primitives/normalize.js';
import { clientIp, COOKIE_DEVICE, COOKIE_FLAGS, COOKIE_LOGIN, COOKIE_SESSION, refusal, type ConsoleContext } from './context.js';
import { html, type Html } from './html.js';
import { csrfField, document, noticeBox, type Notice } from './layout.js';

/** What the session list shows for a console login (passcode.auth `device`). */
export const CONSOLE_DEVICE = 'Hellwall admin console';

// A browser is a device: it gets a MAC of its own on its first visit (random, locally administered,
// kept a year), so its passcodes and tokens are bound to it as a client's are to its MAC [P-3.2],
// and the devices an administrator registers or gets alerts about are their browsers.
const DEVICE_MAX_AGE_S = 365 * 86_400;
const MAC_RE = /^02(:[0-9a-f]{2}){5}$/;

type AuthInput = Parameters<PasscodeService['authenticate']>[0];

const LOGIN_BODY = {
  type: 'object',
  required: ['email', 'phone', 'password', '_csrf'],
  properties: {
    email: { type: 'string', minLength: 1, maxLength: 254 },
    phone: { type: 'string', minLength: 1, maxLength: 40 },
    password: { type: 'string', minLength: 1, maxLength: 1024 },
    _csrf: { type: 'string', maxLength: 100 },
  },
} as const;

const PASSCODE_BODY = {
  type: 'object',
  required: ['passcode', '_csrf'],
  properties: {
    passcode: { type: 'string', minLength: 1, maxLength: 20 },
    totp: { type: 'string', maxLength: 20 },
    _csrf: { type: 'string', maxLength: 100 },
  },
} as const;

interface LoginBody {
  email: string;
  phone: string;
  password: string;
  _csrf: string;
}
interface PasscodeBody {
  passcode: string;
  totp?: string;
  _csrf: string;
}

/**
 * Login in the wire's two steps, through the same PasscodeService (and so the same throttle, audit
 * rows and answers): email, phone and password ask for a passcode by email; the passcode (and an
 * authenticator code where enrolled) opens a Hellwall session. Only then is the role looked at:
 * anyone but an administrator has that session ended at once and is shown the door.
 */
export function registerLoginRoutes(app: FastifyInstance, ctx: ConsoleContext): void {
  const { deps, sessions } = ctx;

  const device = (req: FastifyRequest, reply: FastifyReply): string => {
    const known = req.cookies[COOKIE_DEVICE];
    if (known !== undefined && MAC_RE.test(known)) return known;
    const b = deps.random(5);
    const mac = ['02', ...[...b].map((x) => x.toString(16).padStart(2, '0'))].join(':');
    reply.setCookie(COOKIE_DEVICE, mac, { ...COOKIE_FLAGS, maxAge: DEVICE_MAX_AGE_S });
    return mac;
  };

  const loginPage = (csrf: string, notice?: Notice, email = ''): Html =>
    document(
      'Log in',
      html`<main id="main" class="narrow">
<h1>Hellwall console</h1>
<p>Administrators log in as on the wire: your password, then the passcode mailed to you.</p>
${notice ? noticeBox(notice) : ''}
<form method="post" action="/login" class="stack">
${csrfField(csrf)}
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" required maxlength="254" value="${email}">
<label for="phone">Phone</label>
<input id="phone" name="phone" type="tel" autocomplete="tel" required maxlength="40">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required maxlength="1024">
<button type="submit">Send me a passcode</button>
</form>
</main>`,
    );

  const passcodePage = (csrf: string, email: string, notice?: Notice): Html =>
    document(
      'Passcode',
      html`<main id="main" class="narrow">
<h1>Enter your passcode</h1>
<p>If the password was right, a passcode is on its way to ${email}.</p>
${notice ? noticeBox(notice) : ''}
<form method="post" action="/login/passcode" class="stack">
${csrfField(csrf)}
<label for="passcode">Passcode</label>
<input id="passcode" name="passcode" inputmode="numeric" autocomplete="one-time-code" required maxlength="20">
<label for="totp">Authenticator code <span class="hint">(if you enrolled one)</span></label>
<input id="totp" name="totp" inputmode="numeric" autocomplete="off" maxlength="20">
<button type="submit">Log in</button>
</form>
<p><a href="/login">Start again</a></p>
</main>`,
    );

  const send = (reply: FastifyReply, page: Html, code = 200): FastifyReply => reply.code(code).type('text/html; charset=utf-8').send(page.text);

  const refused = (reply: FastifyReply): FastifyReply =>
    send(reply, refusal('Form refused', 'This form was not sent from this console page, or it is too old. Open the login page again.'), 403);

  /** A refusal a person can act on; nothing that says whether the account exists. */
  const why = (err: unknown): Notice => {
    if (err instanceof ServiceError && err.kind === 'rate-limited') {
      return { kind: 'error', text: `Too many attempts: try again in ${err.retryAfterSeconds ?? 60} seconds.` };
    }
    if (err instanceof ServiceError && err.kind === 'busy') return { kind: 'error', text: 'The server is busy: try again in a moment.' };
    if (err instanceof ServiceError && err.kind === 'auth-failed') {
      return { kind: 'error', text: 'Login failed. Check the passcode (and the authenticator code), or start again.' };
    }
    throw err;
  };

  app.get('/login', async (req, reply) => {
    const mac = device(req, reply);
    const ended = (req.query as Record<string, string | undefined>).ended !== undefined;
    return send(reply, loginPage(sessions.csrf('login', mac), ended ? { kind: 'error', text: 'Your console session ended: log in again.' } : undefined));
  });

  app.post<{ Body: LoginBody }>('/login', { schema: { body: LOGIN_BODY } }, async (req, reply) => {
    const mac = req.cookies[COOKIE_DEVICE];
    if (!ctx.sameOrigin(req) || mac === undefined || !MAC_RE.test(mac) || !sessions.checkCsrf('login', mac, req.body._csrf)) return refused(reply);
    const { email, phone, password } = req.body;
    try {
      await deps.passcodes.request({ email, password, mac, reportedIp: null, seenIp: clientIp(req) }, ctx.log);
    } catch (err) {
      return send(reply, loginPage(sessions.csrf('login', mac), why(err), email), 429);
    }
    sessions.endLogin(req.cookies[COOKIE_LOGIN]);
    const ttl = deps.config.passcodes.ttlSeconds;
    const id = sessions.startLogin({ email, phone, password, mac, expiresAt: deps.clock() + ttl * 1000 });
    reply.setCookie(COOKIE_LOGIN, id, { ...COOKIE_FLAGS, maxAge: ttl });
    return reply.redirect('/login/passcode', 303);
  });

  app.get('/login/passcode', async (req, reply) => {
    const mac = req.cookies[COOKIE_DEVICE];
    const pending = sessions.pendingLogin(req.cookies[COOKIE_LOGIN]);
    if (!pending || mac !== pending.mac) return reply.redirect('/login', 303);
    return send(reply, passcodePage(sessions.csrf('login', mac), normalizeEmail(pending.email)));
  });

  app.post<{ Body: PasscodeBody }>('/login/passcode', { schema: { body: PASSCODE_BODY } }, async (req, reply) => {
    const mac = req.cookies[COOKIE_DEVICE];
    if (!ctx.sameOrigin(req) || !sessions.checkCsrf('login', mac, req.body._csrf)) return refused(reply);
    const loginId = req.cookies[COOKIE_LOGIN];
    const pending = sessions.pendingLogin(loginId);
    if (!pending || mac !== pending.mac) return reply.redirect('/login?ended=1', 303);
    const seenIp = clientIp(req);
    const totp = req.body.totp?.trim();
    // The authenticator code goes along when given; the service decides whether the account needs one.
    const factors: Record<string, unknown> = totp ? { totp } : {};
    const input: AuthInput = {
      ...factors,
      email: pending.email,
      phone: pending.phone,
      password: pending.password,
      passcode: req.body.passcode.trim(),
      mac,
      seenIp,
      device: CONSOLE_DEVICE,
      // The console is the client here: its clock is the server's.
      clientTime: deps.clock(),
    };
    let login;
    try {
      login = await deps.passcodes.authenticate(input, ctx.log);
    } catch (err) {
      return send(reply, passcodePage(sessions.csrf('login', mac), normalizeEmail(pending.email), why(err)), 401);
    }
    sessions.endLogin(loginId);
    reply.clearCookie(COOKIE_LOGIN, COOKIE_FLAGS);
    const caller = { token: login.token, mac, seenIp };
    try {
      await deps.admin.authorize(caller, 'admin.console.login', ctx.log);
    } catch (err) {
      if (!(err instanceof ServiceError) || err.kind !== 'forbidden') throw err;
      // Not an administrator: the session just opened is of no use here, and must not linger.
      await deps.sessions.logout(caller, ctx.log).catch(() => undefined);
      return send(reply, refusal('Administrators only', 'This console is for the admin role only.'), 403);
    }
    const id = sessions.open({ token: login.token, mac, email: login.user.email, expiresAt: login.expiresAt });
    deps.audit.record({ action: 'admin.console.login', outcome: 'success', actor: `console:${login.user.email}`, email: login.user.email, ip: seenIp, mac });
    ctx.log.info({ event: 'console.login', email: login.user.email }, 'console session opened');
    // No Max-Age: the browser forgets it when it closes; the server forgets it when idle.
    reply.setCookie(COOKIE_SESSION, id, COOKIE_FLAGS);
    return reply.redirect('/overview', 303);
  });

  app.post<{ Body: { _csrf?: string } }>('/logout', async (req, reply) => {
    const sid = req.cookies[COOKIE_SESSION];
    if (!ctx.sameOrigin(req) || !sessions.checkCsrf('session', sid, req.body?._csrf)) return refused(reply);
    const session = sessions.use(sid);
    sessions.end(sid);
    reply.clearCookie(COOKIE_SESSION, COOKIE_FLAGS);
    if (session) {
      await deps.sessions.logout({ token: session.token, mac: session.mac, seenIp: clientIp(req) }, ctx.log).catch(() => undefined);
    }
    return reply.redirect('/login', 303);
  });
}
