import { auditCommand } from './audit.js';
import { cleanupCommand } from './cleanup.js';
import { clientGroup } from './client.js';
import type { Entry } from './command.js';
import { completionCommand } from './completion.js';
import { configGroup } from './config.js';
import { keyGroup } from './key.js';
import { serveCommand } from './serve.js';
import { sessionsGroup } from './sessions.js';
import { statsCommand } from './stats.js';
import { storeGroup } from './store.js';
import { userGroup } from './user.js';

/**
 * Every top-level command and group, in the order `hellwall --help` lists them. A new group is one
 * file and one line here; help, parsing and completion follow from its declaration.
 */
export const ENTRIES: readonly Entry[] = [
  serveCommand,
  userGroup,
  sessionsGroup,
  keyGroup,
  statsCommand,
  auditCommand,
  cleanupCommand,
  storeGroup,
  configGroup,
  clientGroup,
  completionCommand(() => ENTRIES),
];
