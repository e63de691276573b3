import os from 'node:os';
import { input, password, select } from '@inquirer/prompts';
import type { AuthenticatedClient } from '../client/authenticated.js';
import type { HellwallClient } from '../client/client.js';
import { localMac } from '../client/device.js';
import type { StoredToken } from '../client/token-file.js';
import type { ErrorResponse } from '../protocol/messages.gen.js';
import { loadProtocol, type Protocol } from '../protocol/registry.js';
import type { Ctx, Parsed } from './command.js';
import { authenticated, forgetToken, refused, saveToken, sessionListText, storedFrom, storedToken, tokenFile, withClient } from './client-connection.js';
import { readFaceImage } from './client-face.js';
import { CancelledError, CliError, EXIT, UsageError } from './errors.js';
import { printable } from './output.js';

// `hellwall client` on a terminal: what 4Auth's client offers, as a menu. Log in (email, phone,
// password, the passcode from the mail, a TOTP code and a face photo when the server offers them),
// register an operator (admins), recovery (whatever the server's protocol offers), my sessions,
// exit. Each action opens its own connection, so a server restarted meanwhile is no trouble. Secrets
// are read with @inquirer/prompts' password prompt with its reveal toggle off: readline in raw mode
// before the prompt is drawn, output muted, nothing echoed (test/cli/client-menu.test.ts proves it
// in a real pseudo-terminal).

/** The request fields the menu fills itself, never asked for. */
const AUTOMATIC = new Set(['code', 'id', 'token', 'mac', 'clientTime', 'ip']);
const SECRET = /password|passcode|code|secret|totp|otp/i;

interface MenuState {
  readonly ctx: Ctx;
  readonly args: Parsed;
  readonly file: string;
  readonly protocol: Protocol;
  readonly prompt: { input: NodeJS.ReadableStream; output: NodeJS.WritableStream };
  readonly signal: AbortSignal;
}

/** Runs the menu until Exit (0), end of input (0) or Ctrl-C (130). */
export async function runMenu(ctx: Ctx, args: Parsed): Promise<number> {
  if (!ctx.io.stdin.isTTY) throw new UsageError('the interactive client needs a terminal: see `hellwall client --help` for its commands');
  // Ctrl-C outside a prompt (while waiting for the server) cancels that wait and leaves; within a
  // prompt, readline sees it (raw mode) and the prompt rejects with ExitPromptError.
  const abort = new AbortController();
  const onSigint = (): void => abort.abort();
  process.on('SIGINT', onSigint);
  const state: MenuState = {
    ctx,
    args,
    file: tokenFile(ctx, args),
    protocol: ctx.io.protocol ?? loadProtocol(),
    prompt: { input: ctx.io.stdin as NodeJS.ReadableStream, output: ctx.io.stdout as unknown as NodeJS.WritableStream },
    signal: abort.signal,
  };
  try {
    for (;;) {
      const stored = storedToken(ctx, state.file);
      const who = stored ? `logged in as ${printable(stored.email ?? '?')} (${printable(stored.role ?? '?')})` : 'not logged in';
      const action = await select(
        {
          message: `Hellwall: ${who}`,
          choices: [
            ...(stored ? [] : [{ name: 'Log in', value: 'login' }]),
            ...(stored ? [{ name: 'My sessions', value: 'sessions' }] : []),
            ...(stored?.role === 'admin' ? [{ name: 'Register an operator', value: 'register' }] : []),
            { name: 'Recovery', value: 'recovery' },
            ...(stored ? [{ name: 'Log out', value: 'logout' }] : []),
            { name: 'Exit', value: 'exit' },
          ],
        },
        state.prompt,
      );
      if (action === 'exit') return EXIT.ok;
      try {
        await cancellable(state, perform(state, action, stored));
      } catch (err) {
        // A refusal or an unreachable server ends the action, not the menu.
        if (err instanceof CliError || err instanceof UsageError) ctx.note(err.message);
        else throw err;
      }
    }
  } catch (err) {
    if (err instanceof CancelledError || isPromptExit(err, 'SIGINT')) {
      ctx.io.stderr.write('\n');
      ctx.note('cancelled');
      return EXIT.cancelled;
    }
    if (isPromptExit(err, 'EOF')) {
      ctx.io.stderr.write('\n');
      return EXIT.ok;
    }
    throw err;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

/** Inquirer's "the person left the prompt": Ctrl-C (SIGINT) or Ctrl-D (EOF). */
function isPromptExit(err: unknown, how: 'SIGINT' | 'EOF'): boolean {
  return err instanceof Error && err.name === 'ExitPromptError' && err.message.includes(how);
}

/** `work`, unless Ctrl-C comes first (then CancelledError; the connection closes with withClient). */
function cancellable<T>(state: MenuState, work: Promise<T>): Promise<T> {
  if (state.signal.aborted) return Promise.reject(new CancelledError('cancelled'));
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(new CancelledError('cancelled'));
    state.signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => state.signal.removeEventListener('abort', onAbort));
  });
}

function perform(state: MenuState, action: string, stored: StoredToken | null): Promise<void> {
  switch (action) {
    case 'login':
      return login(state);
    case 'sessions':
      return sessions(state);
    case 'register':
      return register(state);
    case 'recovery':
      return recovery(state, stored);
    case 'logout':
      return logout(state);
    default:
      return Promise.resolve();
  }
}

const ask = (state: MenuState, message: string, def?: string): Promise<string> =>
  input({ message, ...(def !== undefined && { default: def }), validate: (v) => v.trim() !== '' || 'required' }, state.prompt).then((v) => v.trim());

/** A secret: nothing is echoed, not even its length, and it cannot be revealed. */
const askSecret = (state: MenuState, message: string): Promise<string> =>
  password({ message, mask: false, toggleMask: false, validate: (v) => v !== '' || 'required' }, state.prompt);

/** A secret that may be left empty. */
const askOptionalSecret = (state: MenuState, message: string): Promise<string> => password({ message, mask: false, toggleMask: false }, state.prompt);

function connect<T>(state: MenuState, fn: (client: HellwallClient) => Promise<T>): Promise<T> {
  return withClient(state.ctx, state.args, fn);
}

/** The stored session, or a clear "log in first". */
function session<T>(state: MenuState, fn: (auth: AuthenticatedClient, stored: StoredToken) => Promise<T>): Promise<T> {
  const stored = storedToken(state.ctx, state.file);
  if (!stored) throw new UsageError('not logged in');
  return connect(state, (client) => fn(authenticated(state.ctx, client, { token: stored.token, mac: stored.mac, source: 'file', file: state.file }), stored));
}

/** The request schema's properties of a command, or none when this protocol lacks it. */
function properties(state: MenuState, name: string): Record<string, { type?: string }> | null {
  const entry = [...state.protocol.commands.values()].find((c) => c.name === name);
  if (!entry) return null;
  return (state.protocol.schemas.get(entry.request)?.properties ?? {}) as Record<string, { type?: string }>;
}

async function login(state: MenuState): Promise<void> {
  const { ctx } = state;
  const email = await ask(state, 'Email:');
  const phone = await ask(state, 'Phone:');
  const secret = await askSecret(state, 'Password:');
  const mac = localMac(os.networkInterfaces()) ?? (await ask(state, "This machine's MAC:"));
  const device = `${os.hostname()}: hellwall client`;
  await connect(state, async (client) => {
    const req = await client.command('passcode.request', { email, mac, password: secret });
    if (req.status !== 'ok') throw refused(req);
    ctx.out('A passcode is on its way to your mail (if the details are right).');
    const passcode = await ask(state, 'Passcode from the mail:');
    // The server never says which factor is missing [P-4.3]: an operator with an authenticator
    // gives its code, one without leaves it empty.
    const props = properties(state, 'passcode.auth') ?? {};
    const totp = 'totp' in props ? await askOptionalSecret(state, 'TOTP code from your authenticator (Enter if you have none):') : '';
    // Likewise the face factor, where the server offers it.
    const face = 'face' in props ? await askFace(state) : undefined;
    const res = await client.send({
      code: codeOf(state, 'passcode.auth'),
      email,
      phone,
      password: secret,
      passcode,
      mac,
      device,
      ...('clientTime' in props && { clientTime: Date.now() }),
      ...(totp !== '' && { totp }),
      ...(face !== undefined && { face }),
    });
    if (res.status !== 'ok') throw refused(res);
    const ok = res as unknown as { token: string; user: { email: string; role: string }; expiresAt: number; renewableUntil: number; scope?: string; enroll?: string[] };
    saveToken(state.file, { ...storedFrom(ok), mac });
    ctx.out(`Logged in as ${printable(ok.user.email)} (${printable(ok.user.role)}).`);
    if (ok.scope === 'enroll') await enrolTotp(state, client, ok.token, mac, ok.enroll ?? []);
  });
}

/**
 * An enrolment-only session [P-4.14]: the role requires an authenticator not yet enrolled. The
 * secret is shown (QR and text), a code confirms it, the recovery codes are shown once, and the
 * enrolment session ends: the next login uses the authenticator.
 */
async function enrolTotp(state: MenuState, client: HellwallClient, token: string, mac: string, factors: readonly string[]): Promise<void> {
  const { ctx } = state;
  if (!factors.includes('totp') || !properties(state, 'totp.enroll')) {
    ctx.out(`Your role requires ${factors.join(', ') || 'a second factor'} before anything else; ask an administrator.`);
    return;
  }
  ctx.out('Your role requires an authenticator app (TOTP). Add this account to it:');
  const started = (await client.send({ code: codeOf(state, 'totp.enroll'), token, mac })) as Record<string, unknown> & { status: string };
  if (started.status !== 'ok') throw refused(started);
  if (typeof started.qrText === 'string') ctx.out(started.qrText);
  ctx.out(`or type in the secret: ${printable(String(started.secret))}`);
  const code = await askSecret(state, 'Code shown by the authenticator:');
  const confirmed = (await client.send({ code: codeOf(state, 'totp.confirm'), token, mac, totp: code })) as Record<string, unknown> & { status: string };
  if (confirmed.status !== 'ok') throw refused(confirmed);
  const codes = Array.isArray(confirmed.recoveryCodes) ? (confirmed.recoveryCodes as string[]) : [];
  if (codes.length > 0) ctx.out(`Recovery codes (each works once; keep them safe, they are not shown again):\n  ${codes.map(printable).join('\n  ')}`);
  await client.command('session.logout', { token, mac });
  forgetToken(state.file);
  ctx.out('The authenticator is enrolled. Log in again with its code.');
}

/** A command's code from the protocol index (never a literal). */
function codeOf(state: MenuState, name: string): number {
  const entry = [...state.protocol.commands.values()].find((c) => c.name === name);
  if (!entry) throw new Error(`protocol/index.json has no ${name}`);
  return entry.code;
}

async function sessions(state: MenuState): Promise<void> {
  const { ctx } = state;
  const list = await session(state, async (auth) => {
    const res = await auth.call('session.list', {});
    if (res.status !== 'ok') throw refused(res);
    return res.sessions;
  });
  ctx.out(sessionListText(list, false));
  const choice = await select(
    {
      message: 'Sessions',
      choices: [
        ...list.filter((s) => !s.current).map((s) => ({ name: `Log out session ${s.id} (${printable(s.device ?? s.ip)})`, value: String(s.id) })),
        { name: 'Log out everywhere', value: 'all' },
        { name: 'Back', value: 'back' },
      ],
    },
    state.prompt,
  );
  if (choice === 'back') return;
  await session(state, async (auth) => {
    if (choice === 'all') {
      const res = await auth.call('session.logout_all', {});
      if (res.status !== 'ok') throw refused(res);
      forgetToken(state.file);
      ctx.out(`Logged out everywhere: ${res.ended} session(s) ended.`);
      return;
    }
    const res = await auth.call('session.revoke', { sessionId: Number(choice) });
    if (res.status !== 'ok') throw refused(res);
    ctx.out(`Session ${choice} ended.`);
  });
}

async function register(state: MenuState): Promise<void> {
  const email = await ask(state, 'New operator email:');
  const phone = await ask(state, 'Phone:');
  const role = await select({ message: 'Role', choices: [{ name: 'user', value: 'user' }, { name: 'admin', value: 'admin' }] }, state.prompt);
  const first = await askSecret(state, 'Their password:');
  const again = await askSecret(state, 'Again:');
  if (first !== again) throw new UsageError('the passwords differ: nothing was changed');
  await session(state, async (auth) => {
    const res = await auth.call('admin.user.add', { email, phone, role, password: first });
    if (res.status !== 'ok') throw refused(res);
    state.ctx.out(`Added ${printable(res.user.role)} ${printable(res.user.email)} (id ${res.user.id}).`);
  });
}

const FLOW_NAMES: Readonly<Record<string, string>> = {
  'recovery.password': 'Forgotten password',
  'recovery.totp': 'Lost authenticator',
  'recovery.device': 'New device (this machine)',
};

/**
 * The recovery flows this protocol offers: every `recovery.*` command that takes a mailed recovery
 * passcode, as a form made from its request schema (required fields must be answered, optional ones
 * may be skipped). With none, the way out is an administrator.
 */
async function recovery(state: MenuState, stored: StoredToken | null): Promise<void> {
  const { ctx } = state;
  const flows = [...state.protocol.commands.values()].filter((c) => c.name.startsWith('recovery.') && c.name !== 'recovery.request');
  if (flows.length === 0 || !properties(state, 'recovery.request')) {
    ctx.out('This server offers no self-service recovery: ask an administrator to reset your password (hellwall user reset-password).');
    return;
  }
  const name = await select(
    { message: 'Recovery', choices: [...flows.map((c) => ({ name: FLOW_NAMES[c.name] ?? c.name, value: c.name })), { name: 'Back', value: 'back' }] },
    state.prompt,
  );
  if (name === 'back') return;
  const entry = flows.find((c) => c.name === name)!;
  const email = await ask(state, 'Email:', stored?.email);
  const mac = localMac(os.networkInterfaces()) ?? (await ask(state, "This machine's MAC:"));
  const schema = state.protocol.schemas.get(entry.request) ?? {};
  const props = (schema.properties ?? {}) as Record<string, { type?: string }>;
  const required = new Set((schema.required as string[] | undefined) ?? []);
  await connect(state, async (client) => {
    const req = await client.send({ code: codeOf(state, 'recovery.request'), email, mac, clientTime: Date.now() });
    if (req.status !== 'ok') throw refused(req);
    ctx.out('A recovery passcode is on its way to your mail (if the account can recover by itself).');
    const fields: Record<string, unknown> = { email, mac, passcode: await ask(state, 'Recovery passcode from the mail:') };
    for (const [key, prop] of Object.entries(props)) {
      if (AUTOMATIC.has(key) || key in fields) continue;
      // A JPEG, never base64 typed in: asked as at login, and read from the file or the camera.
      if (key === 'face') {
        const face = await askFace(state);
        if (face !== undefined) fields.face = face;
        continue;
      }
      const label = `${key}${required.has(key) ? '' : ' (optional: Enter to skip)'}:`;
      const answer = SECRET.test(key) ? (required.has(key) ? await askSecret(state, label) : await askOptionalSecret(state, label)) : required.has(key) ? await ask(state, label) : (await input({ message: label }, state.prompt)).trim();
      if (answer !== '') fields[key] = prop.type === 'integer' ? Number(answer) : answer;
    }
    if ('clientTime' in props) fields.clientTime = Date.now();
    const res = await client.send({ ...fields, code: entry.code });
    if (res.status !== 'ok') throw refused(res);
    const { code: _code, id: _id, status: _status, ...rest } = res;
    ctx.out(`Done${Object.keys(rest).length > 0 ? `: ${printable(JSON.stringify(rest))}` : '.'}`);
  });
}

/**
 * The face photo, for login and recovery alike: a JPEG file or `camera` (ffmpeg). Enter sends none,
 * since the server never says whether the account has the factor [P-4.3].
 */
async function askFace(state: MenuState): Promise<string | undefined> {
  const spec = (await input({ message: 'Face photo, a JPEG file or "camera" (Enter if you have no face factor):' }, state.prompt)).trim();
  return spec === '' ? undefined : readFaceImage(spec);
}

async function logout(state: MenuState): Promise<void> {
  await session(state, async (auth) => {
    const res = await auth.call('session.logout', {});
    if (res.status !== 'ok' && (res as ErrorResponse).error !== 'E_UNAUTHENTICATED') throw refused(res);
  });
  forgetToken(state.file);
  state.ctx.out('Logged out.');
}
