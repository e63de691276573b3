import { adminSessionView } from '../services/views.js';
import { flag, JSON_OPTION, text, type Command, type Group } from './command.js';
import { UsageError } from './errors.js';
import { withAdmin } from './local.js';
import { printable } from './output.js';
import { wholeNumber } from './values.js';
import { sessionsText } from './views.js';

// `hellwall sessions …`: what operators see and end of the sessions table; never a token.

const list: Command = {
  name: 'list',
  summary: 'active sessions (all operators, or one): id, operator, MAC, address, device (its known-device name, registered or not), login and last use',
  local: true,
  options: { email: { type: 'string', value: 'E', help: "only this operator's sessions" }, ...JSON_OPTION },
  examples: ['hellwall sessions list --email ops@example.com'],
  run: (ctx, args) =>
    withAdmin(ctx, async (admin, actor) => {
      ctx.out(sessionsText((await admin.listSessions(actor, text(args, 'email'))).map(adminSessionView), flag(args, 'json')));
      return 0;
    }),
};

const revoke: Command = {
  name: 'revoke',
  summary: 'end one session (--id), or every session of an operator (--email); reason admin-revoked',
  local: true,
  options: {
    id: { type: 'string', value: 'N', help: 'the session id (see sessions list)' },
    email: { type: 'string', value: 'E', help: 'every session of this operator' },
  },
  details: 'Give exactly one of --id and --email. The ended tokens answer unauthorized from then on.',
  examples: ['hellwall sessions revoke --id 42', 'hellwall sessions revoke --email ops@example.com'],
  run: (ctx, args) => {
    const idText = text(args, 'id');
    const email = text(args, 'email');
    if ((idText === undefined) === (email === undefined)) throw new UsageError('sessions revoke needs --id N or --email E (one of them)');
    const id = idText === undefined ? undefined : wholeNumber(idText, '--id');
    return withAdmin(ctx, async (admin, actor) => {
      if (id !== undefined) {
        const session = await admin.revokeSession(actor, id);
        ctx.out(`session ${session.id} of ${printable(session.userEmail)} ended`);
        return 0;
      }
      const { user, ended } = await admin.revokeUserSessions(actor, email!);
      ctx.out(`${ended} session(s) of ${printable(user.email)} ended`);
      return 0;
    });
  },
};

export const sessionsGroup: Group = {
  name: 'sessions',
  summary: 'sessions in the local data directory: list, revoke',
  commands: [list, revoke],
};
