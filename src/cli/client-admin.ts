import { passwordPolicyWarning } from '../primitives/passwords.js';
import type { AuditOutcome } from '../protocol/messages.gen.js';
import { flag, JSON_OPTION, need, text, type Command, type Ctx, type OptionDefs, type Parsed } from './command.js';
import type { AuthenticatedClient } from '../client/authenticated.js';
import { AUDIT_FILTERS } from './audit.js';
import { authenticated, CONNECTION_OPTIONS, credentials, refused, TOKEN_OPTIONS, withClient } from './client-connection.js';
import { UsageError } from './errors.js';
import { printable } from './output.js';
import { readSecret } from './secret.js';
import { parseTime, wholeNumber } from './values.js';
import { auditText, sessionsText, statsText, userText, usersText } from './views.js';

// `hellwall client admin …`: the admin.* commands [P-4.12] from another machine, as kcadm.sh does
// for Keycloak: the same words, options and output (table, or --json) as the local `user`,
// `sessions`, `stats` and `audit`, but through a running server with an administrator's stored
// token. The server decides, checks and audits (actor: the administrator, not cli:<os user>).

const REMOTE: OptionDefs = { ...TOKEN_OPTIONS, ...CONNECTION_OPTIONS };
const EMAIL: OptionDefs = { email: { type: 'string', value: 'E', help: "the operator's email (required)" } };

/** Runs `fn` with an authenticated client; an error answer is exit 1 with its message. */
function remote(ctx: Ctx, args: Parsed, fn: (auth: AuthenticatedClient) => Promise<number>): Promise<number> {
  const creds = credentials(ctx, args);
  return withClient(ctx, args, (client) => fn(authenticated(ctx, client, creds)));
}

/** The answer, or exit 1 with the server's message (E_FORBIDDEN: not an admin, or login too old). */
function ok<T extends { status: string }>(res: T | { status: 'error' }): Extract<T, { status: 'ok' }> {
  if (res.status !== 'ok') throw refused(res);
  return res as Extract<T, { status: 'ok' }>;
}

function warnPassword(ctx: Ctx, password: string): void {
  const warning = passwordPolicyWarning(password);
  if (warning) ctx.warn(warning);
}

const PASSWORD_NOTE = 'The password comes from $HELLWALL_PASSWORD, else the first line of stdin, else a prompt without echo.';

const userAdd: Command = {
  name: 'add',
  summary: 'add an operator (needs a login within admin.reauthSeconds)',
  options: { ...EMAIL, phone: { type: 'string', value: 'P', help: 'phone number (required)' }, role: { type: 'string', value: 'R', help: 'role: user (default), admin, or one the policy declares' }, ...REMOTE },
  details: PASSWORD_NOTE,
  examples: ["HELLWALL_PASSWORD='…' hellwall client admin user add --email new@example.com --phone '+1 555 0101'"],
  run: async (ctx, args) => {
    const email = need(args, 'email');
    const phone = need(args, 'phone');
    const role = text(args, 'role') ?? 'user';
    const password = await readSecret(ctx.env, ctx.io, `Password for ${printable(email)}: `);
    return remote(ctx, args, async (auth) => {
      const { user } = ok(await auth.call('admin.user.add', { email, phone, role, password }));
      ctx.out(`added ${printable(user.role)} ${printable(user.email)} (id ${user.id})`);
      warnPassword(ctx, password);
      return 0;
    });
  },
};

const userList: Command = {
  name: 'list',
  summary: 'every operator (never a password hash)',
  options: { ...JSON_OPTION, ...REMOTE },
  examples: ['hellwall client admin user list --json'],
  run: (ctx, args) =>
    remote(ctx, args, async (auth) => {
      ctx.out(usersText(ok(await auth.call('admin.user.list', {})).users, flag(args, 'json')));
      return 0;
    }),
};

const userShow: Command = {
  name: 'show',
  summary: 'one operator, with the number of active sessions',
  options: { ...EMAIL, ...JSON_OPTION, ...REMOTE },
  examples: ['hellwall client admin user show --email ops@example.com'],
  run: (ctx, args) => {
    const email = need(args, 'email');
    return remote(ctx, args, async (auth) => {
      const { user, activeSessions } = ok(await auth.call('admin.user.show', { email }));
      ctx.out(userText({ ...user, activeSessions }, flag(args, 'json')));
      return 0;
    });
  },
};

const userDisable: Command = {
  name: 'disable',
  summary: 'disable the account and end its sessions (not your own)',
  options: { ...EMAIL, ...REMOTE },
  examples: ['hellwall client admin user disable --email ops@example.com'],
  run: (ctx, args) => {
    const email = need(args, 'email');
    return remote(ctx, args, async (auth) => {
      const { user, sessionsEnded } = ok(await auth.call('admin.user.disable', { email }));
      ctx.out(`disabled ${printable(user.email)}; ${sessionsEnded} session(s) ended`);
      return 0;
    });
  },
};

const userEnable: Command = {
  name: 'enable',
  summary: 'enable it again (ended sessions stay ended)',
  options: { ...EMAIL, ...REMOTE },
  examples: ['hellwall client admin user enable --email ops@example.com'],
  run: (ctx, args) => {
    const email = need(args, 'email');
    return remote(ctx, args, async (auth) => {
      ctx.out(`enabled ${printable(ok(await auth.call('admin.user.enable', { email })).user.email)}`);
      return 0;
    });
  },
};

const userSetRole: Command = {
  name: 'set-role',
  summary: 'change the role (needs a recent login)',
  options: { ...EMAIL, role: { type: 'string', value: 'R', help: 'the new role (required)' }, ...REMOTE },
  examples: ['hellwall client admin user set-role --email ops@example.com --role admin'],
  run: (ctx, args) => {
    const email = need(args, 'email');
    const role = need(args, 'role');
    return remote(ctx, args, async (auth) => {
      const { user } = ok(await auth.call('admin.user.set_role', { email, role }));
      ctx.out(`${printable(user.email)} is now ${printable(user.role)}`);
      return 0;
    });
  },
};

const userResetPassword: Command = {
  name: 'reset-password',
  summary: "set an operator's password; ends every session of theirs (needs a recent login)",
  options: { ...EMAIL, ...REMOTE },
  details: PASSWORD_NOTE,
  examples: ['hellwall client admin user reset-password --email ops@example.com'],
  run: async (ctx, args) => {
    const email = need(args, 'email');
    const password = await readSecret(ctx.env, ctx.io, `New password for ${printable(email)}: `);
    return remote(ctx, args, async (auth) => {
      const { user, sessionsEnded } = ok(await auth.call('admin.user.reset_password', { email, password }));
      ctx.out(`password of ${printable(user.email)} changed; ${sessionsEnded} session(s) ended`);
      warnPassword(ctx, password);
      return 0;
    });
  },
};

const userDelete: Command = {
  name: 'delete',
  summary: 'delete the operator with every session (irreversible: needs --yes)',
  options: { ...EMAIL, yes: { type: 'boolean', help: 'confirm the deletion' }, ...REMOTE },
  examples: ['hellwall client admin user delete --email ops@example.com --yes'],
  run: (ctx, args) => {
    const email = need(args, 'email');
    if (!flag(args, 'yes')) throw new UsageError(`user delete removes ${printable(email)} with every session: add --yes to confirm`);
    return remote(ctx, args, async (auth) => {
      const { user } = ok(await auth.call('admin.user.delete', { email }));
      ctx.out(`deleted ${printable(user.email)} (id ${user.id})`);
      return 0;
    });
  },
};

const sessionsList: Command = {
  name: 'list',
  summary: 'active sessions (all operators, or one); never a token',
  options: { email: { type: 'string', value: 'E', help: "only this operator's sessions" }, ...JSON_OPTION, ...REMOTE },
  examples: ['hellwall client admin sessions list --email ops@example.com'],
  run: (ctx, args) => {
    const email = text(args, 'email');
    return remote(ctx, args, async (auth) => {
      ctx.out(sessionsText(ok(await auth.call('admin.session.list', { ...(email !== undefined && { email }) })).sessions, flag(args, 'json')));
      return 0;
    });
  },
};

const sessionsRevoke: Command = {
  name: 'revoke',
  summary: 'end one session (--id), or every session of an operator (--email)',
  options: { id: { type: 'string', value: 'N', help: 'the session id' }, email: { type: 'string', value: 'E', help: 'every session of this operator' }, ...REMOTE },
  examples: ['hellwall client admin sessions revoke --id 42'],
  run: (ctx, args) => {
    const idText = text(args, 'id');
    const email = text(args, 'email');
    if ((idText === undefined) === (email === undefined)) throw new UsageError('sessions revoke needs --id N or --email E (one of them)');
    const sessionId = idText === undefined ? undefined : wholeNumber(idText, '--id');
    return remote(ctx, args, async (auth) => {
      if (sessionId !== undefined) {
        const { session } = ok(await auth.call('admin.session.revoke', { sessionId }));
        ctx.out(`session ${session.id} of ${printable(session.email)} ended`);
      } else {
        const { ended } = ok(await auth.call('admin.session.revoke_user', { email: email! }));
        ctx.out(`${ended} session(s) of ${printable(email!)} ended`);
      }
      return 0;
    });
  },
};

const stats: Command = {
  name: 'stats',
  summary: 'active sessions and operators, expired sessions, pending passcodes',
  options: { ...JSON_OPTION, ...REMOTE },
  examples: ['hellwall client admin stats'],
  run: (ctx, args) =>
    remote(ctx, args, async (auth) => {
      const s = ok(await auth.call('admin.stats', {}));
      const view = {
        activeSessions: s.activeSessions,
        activeUsers: s.activeUsers,
        expiredSessions: s.expiredSessions,
        pendingPasscodes: s.pendingPasscodes,
        sessionsPerUser: Object.fromEntries(s.sessionsPerUser.map((u) => [u.email, u.sessions])),
      };
      ctx.out(statsText(view, flag(args, 'json')));
      return 0;
    }),
};

const audit: Command = {
  name: 'audit',
  summary: 'the audit trail, newest first',
  options: {
    ...AUDIT_FILTERS,
    ...JSON_OPTION,
    ...REMOTE,
  },
  details: 'T is an ISO-8601 date or time (UTC unless it names a zone) or an age like 30m, 12h, 7d.',
  examples: ["hellwall client admin audit --action 'admin.*' --since 7d"],
  run: (ctx, args) => {
    const now = Date.now();
    const v = (name: string): string | undefined => text(args, name);
    const query = {
      ...(v('email') !== undefined && { email: v('email')! }),
      ...(v('action') !== undefined && { action: v('action')! }),
      ...(v('outcome') !== undefined && { outcome: v('outcome') as AuditOutcome }),
      ...(v('since') !== undefined && { since: parseTime(v('since')!, '--since', now) }),
      ...(v('until') !== undefined && { until: parseTime(v('until')!, '--until', now) }),
      ...(v('limit') !== undefined && { limit: wholeNumber(v('limit')!, '--limit') }),
      ...(v('before-id') !== undefined && { beforeId: wholeNumber(v('before-id')!, '--before-id') }),
    };
    return remote(ctx, args, async (auth) => {
      const { events, nextBeforeId } = ok(await auth.call('admin.audit.query', query));
      ctx.out(auditText(events, flag(args, 'json')));
      if (!flag(args, 'json') && nextBeforeId !== undefined) ctx.note(`${events.length} rows shown (the limit); older ones: --before-id ${nextBeforeId}`);
      return 0;
    });
  },
};

/** The remote admin commands by their words after `client admin`. */
const COMMANDS: ReadonlyArray<readonly [string, Command]> = [
  ...[userAdd, userList, userShow, userDisable, userEnable, userSetRole, userResetPassword, userDelete].map((c) => [`user ${c.name}`, c] as const),
  ...[sessionsList, sessionsRevoke].map((c) => [`sessions ${c.name}`, c] as const),
  ['stats', stats],
  ['audit', audit],
];

/** Every option any of them takes: `client admin` parses once, then holds each to its own. */
const ALL_OPTIONS: OptionDefs = Object.assign({}, ...COMMANDS.map(([, c]) => c.options)) as OptionDefs;

/**
 * `hellwall client admin <user|sessions> <command> …`, `client admin stats|audit …`: one entry in
 * the client group that dispatches on its words, so the group stays one level deep.
 */
export const adminCommand: Command = {
  name: 'admin',
  summary: 'remote administration (admin.*), as the local user, sessions, stats and audit commands',
  args: 'user|sessions|stats|audit [COMMAND]',
  arity: [1, 2],
  options: ALL_OPTIONS,
  details: [
    'With the stored token of an operator with role admin; the server checks, changes and audits.',
    'Each takes the options of the local command of the same name, and the connection options:',
    ...COMMANDS.map(([words, c]) => `  ${`client admin ${words}`.padEnd(36)} ${c.summary}`),
  ].join('\n'),
  examples: ['hellwall client admin user list', 'hellwall client admin sessions revoke --email ops@example.com', 'hellwall client admin audit --since 1h --json'],
  run: (ctx, args) => {
    const words = args.positionals.join(' ');
    const found = COMMANDS.find(([w]) => w === words);
    if (!found) {
      const known = COMMANDS.map(([w]) => w).join(', ');
      throw new UsageError(`unknown admin command ${JSON.stringify(words)}: one of ${known}`);
    }
    const [, cmd] = found;
    for (const [name, value] of Object.entries(args.values)) {
      if (value !== undefined && name !== 'help' && !(name in cmd.options)) throw new UsageError(`client admin ${words} has no option --${name}`);
    }
    return cmd.run(ctx, { values: args.values, positionals: [] });
  },
};
