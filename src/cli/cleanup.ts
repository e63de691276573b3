import { flag, JSON_OPTION, type Command } from './command.js';
import { EXIT } from './errors.js';
import { withApp } from './local.js';
import { json } from './output.js';

/** `hellwall cleanup`: one housekeeping pass, to completion, beside a running server or without one. */
export const cleanupCommand: Command = {
  name: 'cleanup',
  summary: 'delete expired passcodes, dead sessions and audit rows past audit.retentionDays now',
  local: true,
  options: JSON_OPTION,
  details: "What the server's housekeeping does every housekeeping.intervalSeconds. Exit 1 when the\ndatabase stayed locked by another writer (the counts are then partial: run it again).",
  examples: ['hellwall cleanup'],
  run: (ctx, args) =>
    withApp(ctx, async (app) => {
      const pass = await app.housekeeper.runOnce();
      if (flag(args, 'json')) {
        ctx.out(json({ deleted: pass.deleted, batches: pass.batches, busy: pass.busy }));
      } else {
        const rows = Object.entries(pass.deleted) as Array<[string, number]>;
        const width = Math.max(...rows.map(([k]) => k.length));
        ctx.out(rows.map(([k, n]) => `${k.padEnd(width)}  ${n}`).join('\n'));
      }
      if (pass.busy) {
        ctx.note('the database stayed locked by another writer; the counts above are partial: run cleanup again');
        return EXIT.refused;
      }
      return EXIT.ok;
    }),
};
