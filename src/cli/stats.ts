import { flag, JSON_OPTION, type Command } from './command.js';
import { withAdmin } from './local.js';
import { statsText } from './views.js';

/** `hellwall stats`: counts an operator asks for first; read-only. */
export const statsCommand: Command = {
  name: 'stats',
  summary: 'active sessions and operators, expired sessions not yet cleaned up, pending passcodes',
  local: true,
  options: JSON_OPTION,
  details: 'With active operators, a table of active sessions per operator follows.',
  examples: ['hellwall stats', 'hellwall stats --json'],
  run: (ctx, args) =>
    withAdmin(ctx, async (admin, actor) => {
      ctx.out(statsText(await admin.stats(actor), flag(args, 'json')));
      return 0;
    }),
};
