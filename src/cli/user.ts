import { normalizeEmail } from '../primitives/normalize.js';
import { passwordPolicyWarning } from '../primitives/passwords.js';
import { userView } from '../services/views.js';
import { flag, JSON_OPTION, need, text, type Command, type Ctx, type Group, type OptionDefs } from './command.js';
import { UsageError } from './errors.js';
import { withAdmin } from './local.js';
import { printable } from './output.js';
import { readSecret } from './secret.js';
import { userText, usersText } from './views.js';
import { userDevice } from './user-device.js';

// `hellwall user …`: operators, through the admin service the wire's admin.user.* commands use.

const EMAIL: OptionDefs = { email: { type: 'string', value: 'E', help: "the operator's email (required)" } };
const PASSWORD_NOTE = 'The password comes from $HELLWALL_PASSWORD, else the first line of stdin, else a prompt without echo.';

/** A policy warning on a password the policy accepts (short, or only one kind of character). */
function warnPassword(ctx: Ctx, password: string): void {
  const warning = passwordPolicyWarning(password);
  if (warning) ctx.warn(warning);
}

const add: Command = {
  name: 'add',
  summary: 'add an operator',
  local: true,
  options: {
    ...EMAIL,
    phone: { type: 'string', value: 'P', help: 'phone number (required)' },
    role: { type: 'string', value: 'R', help: 'role: user (default), admin, or one the policy declares' },
  },
  details: PASSWORD_NOTE,
  examples: ["HELLWALL_PASSWORD='…' hellwall user add --email ops@example.com --phone '+1 555 0100' --role admin"],
  run: (ctx, args) => {
    const email = need(args, 'email');
    const phone = need(args, 'phone');
    return withAdmin(ctx, async (admin, actor) => {
      const password = await readSecret(ctx.env, ctx.io, `Password for ${printable(email)}: `);
      const user = await admin.addUser(actor, { email, phone, role: text(args, 'role') ?? 'user', password });
      ctx.out(`added ${printable(user.role)} ${printable(user.email)} (id ${user.id})`);
      warnPassword(ctx, password);
      return 0;
    });
  },
};

const list: Command = {
  name: 'list',
  summary: 'every operator (never a password hash)',
  local: true,
  options: JSON_OPTION,
  examples: ['hellwall user list', 'hellwall user list --json'],
  run: (ctx, args) =>
    withAdmin(ctx, async (admin, actor) => {
      ctx.out(usersText((await admin.listUsers(actor)).map(userView), flag(args, 'json')));
      return 0;
    }),
};

const show: Command = {
  name: 'show',
  summary: 'one operator, with the number of active sessions',
  local: true,
  options: { ...EMAIL, ...JSON_OPTION },
  examples: ['hellwall user show --email ops@example.com'],
  run: (ctx, args) => {
    const email = need(args, 'email');
    return withAdmin(ctx, async (admin, actor) => {
      const { user, activeSessions } = await admin.showUser(actor, email);
      ctx.out(userText({ ...userView(user), activeSessions }, flag(args, 'json')));
      return 0;
    });
  },
};

const disable: Command = {
  name: 'disable',
  summary: 'disable the account and end its sessions',
  local: true,
  options: EMAIL,
  examples: ['hellwall user disable --email ops@example.com'],
  run: (ctx, args) => {
    const email = need(args, 'email');
    return withAdmin(ctx, async (admin, actor) => {
      const { user, sessionsEnded } = await admin.disableUser(actor, email);
      ctx.out(`disabled ${printable(user.email)}; ${sessionsEnded} session(s) ended`);
      return 0;
    });
  },
};

const enable: Command = {
  name: 'enable',
  summary: 'enable it again (ended sessions stay ended)',
  local: true,
  options: EMAIL,
  examples: ['hellwall user enable --email ops@example.com'],
  run: (ctx, args) => {
    const email = need(args, 'email');
    return withAdmin(ctx, async (admin, actor) => {
      ctx.out(`enabled ${printable((await admin.enableUser(actor, email)).email)}`);
      return 0;
    });
  },
};

const setRole: Command = {
  name: 'set-role',
  summary: 'change the role (user, admin, or one the policy declares)',
  local: true,
  options: { ...EMAIL, role: { type: 'string', value: 'R', help: 'the new role (required)' } },
  examples: ['hellwall user set-role --email ops@example.com --role admin'],
  run: (ctx, args) => {
    const email = need(args, 'email');
    const role = need(args, 'role');
    return withAdmin(ctx, async (admin, actor) => {
      const user = await admin.setRole(actor, email, role);
      ctx.out(`${printable(user.email)} is now ${printable(user.role)}`);
      return 0;
    });
  },
};

const resetPassword: Command = {
  name: 'reset-password',
  summary: 'set a new password; ends every session of the operator',
  local: true,
  options: EMAIL,
  details: PASSWORD_NOTE,
  examples: ['hellwall user reset-password --email ops@example.com'],
  run: (ctx, args) => {
    const email = need(args, 'email');
    return withAdmin(ctx, async (admin, actor, app) => {
      if (!(await app.store.findUserByEmail(normalizeEmail(email)))) {
        // Refused before asking for a password nobody could use, and through the service so that
        // the refusal is audited like any other: it looks the operator up before the password (and
        // an empty password could never pass the policy anyway).
        await admin.resetPassword(actor, email, '');
      }
      const password = await readSecret(ctx.env, ctx.io, `New password for ${printable(email)}: `);
      const { user, sessionsEnded } = await admin.resetPassword(actor, email, password);
      ctx.out(`password of ${printable(user.email)} changed; ${sessionsEnded} session(s) ended`);
      warnPassword(ctx, password);
      return 0;
    });
  },
};

const remove: Command = {
  name: 'delete',
  summary: 'delete the operator with every session (irreversible: needs --yes)',
  local: true,
  options: { ...EMAIL, yes: { type: 'boolean', help: 'confirm the deletion' } },
  examples: ['hellwall user delete --email ops@example.com --yes'],
  run: (ctx, args) => {
    const email = need(args, 'email');
    if (!flag(args, 'yes')) throw new UsageError(`user delete removes ${printable(email)} with every session: add --yes to confirm`);
    return withAdmin(ctx, async (admin, actor) => {
      const user = await admin.deleteUser(actor, email);
      ctx.out(`deleted ${printable(user.email)} (id ${user.id})`);
      return 0;
    });
  },
};

const totpRemove: Command = {
  name: 'totp-remove',
  summary: "remove the operator's authenticator and recovery codes (lost both); they enrol anew at their next login",
  local: true,
  options: EMAIL,
  examples: ['hellwall user totp-remove --email ops@example.com'],
  run: (ctx, args) => {
    const email = need(args, 'email');
    return withAdmin(ctx, async (_admin, actor, app) => {
      const user = await app.services.recovery.adminRemoveTotp(actor.name, email);
      ctx.out(`authenticator of ${printable(user.email)} removed; they enrol a new one at their next login`);
      return 0;
    });
  },
};

export const userGroup: Group = {
  name: 'user',
  summary: 'operators in the local data directory: add, list, show, disable, enable, set-role, reset-password, delete, totp-remove, device',
  details: 'Every change is recorded in the audit trail with actor cli:<os user>, refused ones included.',
  commands: [add, list, show, disable, enable, setRole, resetPassword, remove, totpRemove, userDevice],
};
