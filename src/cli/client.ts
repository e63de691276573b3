import os from 'node:os';
import { localMac } from '../client/device.js';
import { loadProtocol } from '../protocol/registry.js';
import type { ErrorResponse } from '../protocol/messages.gen.js';
import { flag, groupHelp, JSON_OPTION, need, text, type Command, type Ctx, type Group, type Parsed } from './command.js';
import { adminCommand } from './client-admin.js';
import { readFaceImage } from './client-face.js';
import { recoveryCommand } from './client-recovery.js';
import {
  authenticated,
  CONNECTION_OPTIONS,
  credentials,
  forgetToken,
  readLine,
  refused,
  saveToken,
  sessionListText,
  storedFrom,
  tokenFile,
  TOKEN_OPTIONS,
  withClient,
} from './client-connection.js';
import { EXIT, UsageError } from './errors.js';
import { runMenu } from './menu.js';
import { printable } from './output.js';
import { readSecret } from './secret.js';

// `hellwall client …`: a running server over TLS, as an operator (and, with `client admin`, as an
// administrator from another machine). `client` alone on a terminal opens the menu (menu.ts).

const OK = new Set(['ok', 'authorized', 'renew']);

/** A protocol answer for scripts: the response as JSON (control characters escaped); 0 if it is a yes. */
function printAnswer(ctx: Ctx, res: { status: string }): number {
  // Line by line: the newlines of the layout stay, a control character inside a value does not.
  ctx.out(JSON.stringify(res, null, 2).split('\n').map(printable).join('\n'));
  if (res.status === 'error') ctx.note(refused(res).message);
  return OK.has(res.status) ? 0 : 1;
}

/** --mac, else this machine's. */
function macOf(args: Parsed): string {
  const mac = text(args, 'mac') ?? localMac(os.networkInterfaces());
  if (!mac) throw new UsageError('--mac is required (this machine has no network interface with a MAC)');
  return mac;
}

const MAC_OPTION = { mac: { type: 'string', value: 'M', help: "the MAC to bind the session to (default: this machine's)" } } as const;

const hello: Command = {
  name: 'hello',
  summary: 'ask the server for its protocol version and limits',
  options: CONNECTION_OPTIONS,
  examples: ['hellwall client hello', 'hellwall client hello --host hellwall.example --port 7443 --ca ca.pem'],
  run: (ctx, args) => withClient(ctx, args, async (client) => printAnswer(ctx, await client.command('hello', {}))),
};

const passcode: Command = {
  name: 'passcode',
  summary: 'request a passcode by mail (password from $HELLWALL_PASSWORD or a prompt)',
  options: {
    email: { type: 'string', value: 'E', help: 'your email (required)' },
    ...MAC_OPTION,
    ip: { type: 'string', value: 'IP', help: 'the address to bind (behind a proxy)' },
    ...CONNECTION_OPTIONS,
  },
  examples: ['hellwall client passcode --email ops@example.com'],
  run: async (ctx, args) => {
    const email = need(args, 'email');
    const mac = macOf(args);
    const ip = text(args, 'ip');
    const password = await readSecret(ctx.env, ctx.io, 'Password: ');
    return withClient(ctx, args, async (client) => printAnswer(ctx, await client.command('passcode.request', { email, mac, password, ...(ip && { ip }) })));
  },
};

const login: Command = {
  name: 'login',
  summary: 'log in: the passcode from the mail for a token, kept in the token file',
  options: {
    email: { type: 'string', value: 'E', help: 'your email (required)' },
    phone: { type: 'string', value: 'P', help: 'your phone (required)' },
    passcode: { type: 'string', value: 'C', help: 'the passcode from the mail (without it: request one, then ask for it)' },
    totp: { type: 'string', value: 'CODE', help: 'the code from your authenticator app, if you have one enrolled' },
    face: { type: 'string', value: 'FILE', file: true, help: 'a JPEG of your face, if you have the face factor enrolled; `camera` captures one with ffmpeg' },
    ...MAC_OPTION,
    device: { type: 'string', value: 'TEXT', help: 'how your session list names this device (default: host name)' },
    'no-store': { type: 'boolean', help: 'print the token only; leave the token file as it is' },
    'token-file': TOKEN_OPTIONS['token-file']!,
    ...CONNECTION_OPTIONS,
  },
  details:
    'The token and its MAC go to the token file (mode 0600), which check, sessions, logout and admin use;\n' +
    'the answer is printed as JSON. Without --passcode, a passcode is requested and then asked for.',
  examples: [
    "hellwall client login --email ops@example.com --phone '+1 555 0100'",
    "hellwall client login --email ops@example.com --phone '+1 555 0100' --mac 00:1a:2b:3c:4d:5e --passcode K7M2QX",
  ],
  run: async (ctx, args) => {
    const email = need(args, 'email');
    const phone = need(args, 'phone');
    const mac = macOf(args);
    const device = text(args, 'device') ?? `${os.hostname()}: hellwall client`;
    let code = text(args, 'passcode');
    if (code === undefined && !ctx.io.stdin.isTTY) throw new UsageError('--passcode is required (or run it on a terminal to be asked)');
    const faceSpec = text(args, 'face');
    // Read before anything is sent: a missing file must not cost a passcode.
    const face = faceSpec === undefined ? undefined : readFaceImage(faceSpec);
    const password = await readSecret(ctx.env, ctx.io, 'Password: ');
    return withClient(ctx, args, async (client) => {
      if (code === undefined) {
        const req = await client.command('passcode.request', { email, mac, password });
        if (req.status !== 'ok') throw refused(req);
        code = await readLine(ctx, 'Passcode from the mail: ');
      }
      const totp = text(args, 'totp');
      const res = await client.command('passcode.auth', { email, phone, password, passcode: code, mac, device, clientTime: Date.now(), ...(totp !== undefined && { totp }), ...(face !== undefined && { face }) });
      // Stored before anything is printed: the printed token is then never the only copy.
      if (res.status === 'ok' && !flag(args, 'no-store')) {
        const file = tokenFile(ctx, args);
        saveToken(file, { ...storedFrom(res), mac });
        ctx.note(`logged in as ${printable(res.user.email)} (${printable(res.user.role)}); token kept in ${file}`);
      }
      if (res.status === 'ok' && res.scope === 'enroll') {
        ctx.warn(`this session can only enrol ${(res.enroll ?? []).join(', ')}: run \`hellwall client\` on a terminal to enrol an authenticator`);
      }
      return printAnswer(ctx, res);
    });
  },
};

const check: Command = {
  name: 'check',
  summary: 'check the token for a request; a renewed token replaces the stored one first',
  options: {
    ...TOKEN_OPTIONS,
    request: { type: 'string', value: 'NAME', help: 'the request to authorize (default cli.check)' },
    data: { type: 'string', value: 'JSON', help: "the request's data, for the policy" },
    ...CONNECTION_OPTIONS,
  },
  details: 'Exit 0 for authorized and renew, 1 for unauthorized. The answer is printed as JSON.',
  examples: ['hellwall client check --request inventory.read', 'HELLWALL_TOKEN=… hellwall client check --mac 00:1a:2b:3c:4d:5e'],
  run: (ctx, args) => {
    let data: unknown;
    try {
      data = text(args, 'data') === undefined ? undefined : JSON.parse(text(args, 'data')!);
    } catch {
      throw new UsageError('--data must be JSON');
    }
    const creds = credentials(ctx, args);
    return withClient(ctx, args, async (client) => printAnswer(ctx, await authenticated(ctx, client, creds).check(text(args, 'request') ?? 'cli.check', data)));
  },
};

const logout: Command = {
  name: 'logout',
  summary: 'end this session (--all: every session of yours) and remove the token file',
  options: { all: { type: 'boolean', help: 'log out everywhere: every session of yours ends' }, ...TOKEN_OPTIONS, ...CONNECTION_OPTIONS },
  examples: ['hellwall client logout', 'hellwall client logout --all'],
  run: (ctx, args) => {
    const creds = credentials(ctx, args);
    return withClient(ctx, args, async (client) => {
      const auth = authenticated(ctx, client, creds);
      const res = flag(args, 'all') ? await auth.call('session.logout_all', {}) : await auth.call('session.logout', {});
      // A session that has already ended is logged out too: the token file goes either way.
      const gone = res.status === 'ok' || (res as ErrorResponse).error === 'E_UNAUTHENTICATED';
      if (gone && creds.source === 'file') forgetToken(creds.file);
      if (res.status !== 'ok') {
        if (!gone) throw refused(res);
        ctx.out('the session had already ended');
        return 0;
      }
      ctx.out('ended' in res ? `logged out: ${res.ended} session(s) ended` : 'logged out');
      return 0;
    });
  },
};

const sessions: Command = {
  name: 'sessions',
  summary: 'your active sessions (the one you use marked *)',
  options: { ...JSON_OPTION, ...TOKEN_OPTIONS, ...CONNECTION_OPTIONS },
  examples: ['hellwall client sessions', 'hellwall client sessions --json'],
  run: (ctx, args) => {
    const creds = credentials(ctx, args);
    return withClient(ctx, args, async (client) => {
      const res = await authenticated(ctx, client, creds).call('session.list', {});
      if (res.status !== 'ok') throw refused(res);
      ctx.out(sessionListText(res.sessions, flag(args, 'json')));
      return 0;
    });
  },
};

const revoke: Command = {
  name: 'revoke',
  summary: 'end one of your sessions by id (see client sessions)',
  args: 'ID',
  options: { ...TOKEN_OPTIONS, ...CONNECTION_OPTIONS },
  examples: ['hellwall client revoke 42'],
  run: (ctx, args) => {
    const sessionId = Number(args.positionals[0]);
    if (!Number.isSafeInteger(sessionId) || sessionId < 1) throw new UsageError(`the session id must be a whole number, not ${JSON.stringify(args.positionals[0])}`);
    const creds = credentials(ctx, args);
    return withClient(ctx, args, async (client) => {
      const res = await authenticated(ctx, client, creds).call('session.revoke', { sessionId });
      if (res.status !== 'ok') throw refused(res);
      ctx.out(`session ${sessionId} ended`);
      return 0;
    });
  },
};

const password: Command = {
  name: 'password',
  summary: 'change your password (your other sessions end)',
  options: { ...TOKEN_OPTIONS, ...CONNECTION_OPTIONS },
  details: 'The current password comes from $HELLWALL_PASSWORD, the new one from $HELLWALL_NEW_PASSWORD; else prompts without echo.',
  examples: ['hellwall client password'],
  run: async (ctx, args) => {
    const creds = credentials(ctx, args);
    const current = await readSecret(ctx.env, ctx.io, 'Current password: ');
    const next = await readSecret({ HELLWALL_PASSWORD: ctx.env.HELLWALL_NEW_PASSWORD }, ctx.io, 'New password: ');
    return withClient(ctx, args, async (client) => {
      const res = await authenticated(ctx, client, creds).call('password.change', { password: current, newPassword: next });
      if (res.status !== 'ok') throw refused(res);
      ctx.out(`password changed; ${res.sessionsEnded} other session(s) ended`);
      return 0;
    });
  },
};

const send: Command = {
  name: 'send',
  summary: 'send any command by name (protocol/index.json), with the stored token where it needs one',
  args: 'NAME',
  options: { fields: { type: 'string', value: 'JSON', help: "the request's fields as a JSON object (default {})" }, ...TOKEN_OPTIONS, ...CONNECTION_OPTIONS },
  details: 'For commands that have no client command of their own. The answer is printed as JSON.',
  examples: ['hellwall client send session.list', `hellwall client send admin.user.show --fields '{"email":"ops@example.com"}'`],
  run: (ctx, args) => {
    const name = args.positionals[0]!;
    const protocol = ctx.io.protocol ?? loadProtocol();
    const entry = [...protocol.commands.values()].find((c) => c.name === name);
    if (!entry) throw new UsageError(`unknown command ${JSON.stringify(name)}: see protocol/index.json`);
    let fields: Record<string, unknown>;
    try {
      fields = JSON.parse(text(args, 'fields') ?? '{}') as Record<string, unknown>;
    } catch {
      throw new UsageError('--fields must be a JSON object');
    }
    if (typeof fields !== 'object' || fields === null || Array.isArray(fields)) throw new UsageError('--fields must be a JSON object');
    const required = (protocol.schemas.get(entry.request)?.required as string[] | undefined) ?? [];
    const creds = required.includes('token') && fields.token === undefined ? credentials(ctx, args) : null;
    return withClient(ctx, args, async (client) => {
      const message = { ...fields, ...(creds && { token: creds.token, mac: creds.mac }), code: entry.code };
      return printAnswer(ctx, await client.send(message));
    });
  },
};

const menu: Command = {
  name: 'menu',
  summary: 'the interactive client (what `hellwall client` alone opens on a terminal)',
  options: { 'token-file': TOKEN_OPTIONS['token-file']!, ...CONNECTION_OPTIONS },
  examples: ['hellwall client menu'],
  run: (ctx, args) => runMenu(ctx, args),
};

export const clientGroup: Group = {
  name: 'client',
  // `hellwall client` alone: the menu on a terminal, the usage elsewhere (a script gets exit 2).
  noCommand: (ctx) => (ctx.io.stdin.isTTY && ctx.io.stdout.isTTY ? runMenu(ctx, { values: {}, positionals: [] }) : usage(ctx)),
  summary: 'talk to a running server: log in, check, your sessions, remote admin (alone on a terminal: a menu)',
  details:
    'Connection options on every command: --host, --port, --ca, --servername, --timeout (defaults: the\n' +
    "server's own configuration and data directory). Exit codes: 0 done, 1 refused by the server, 2 usage,\n" +
    '3 could not reach or trust the server, 130 cancelled.',
  commands: [menu, hello, passcode, login, check, sessions, revoke, logout, password, recoveryCommand, adminCommand, send],
};

function usage(ctx: Ctx): Promise<number> {
  ctx.io.stderr.write(`${groupHelp(clientGroup)}\n`);
  return Promise.resolve(EXIT.usage);
}
