import { serve } from '../serve.js';
import type { Command } from './command.js';

/** `hellwall serve`: src/serve.ts runs the service (as `npm start` does); this is its help. */
export const serveCommand: Command = {
  name: 'serve',
  summary: 'run the service (same as npm start) until SIGTERM or SIGINT; SIGHUP reloads keys, policy, certificate',
  local: true,
  options: {},
  details:
    'Configuration comes from HELLWALL_* environment variables and the JSON file $HELLWALL_CONFIG names\n' +
    '(see `hellwall config show` and README.md). Logs go to stdout: readable lines on a terminal, JSON\n' +
    'otherwise.',
  examples: ['hellwall serve', 'HELLWALL_PORT=7443 hellwall serve --data-dir /var/lib/hellwall'],
  run: (ctx) => serve(ctx.env),
};
