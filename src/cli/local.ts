import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createApp, DATABASE_FILE, type App } from '../app.js';
import { loadConfig, type Config } from '../config.js';
import type { Logger } from '../deps.js';
import { createLogger } from '../log.js';
import type { Protocol } from '../protocol/registry.js';
import type { Actor, AdminService } from '../services/admin-service.js';
import type { Ctx } from './command.js';

// Local commands (user, key, sessions, stats, audit, cleanup, store) work on the data directory
// through the same app the server builds: same services, same audit trail, same clock and random.

/**
 * The CLI in the audit trail: `cli:<os user>`, the account that ran it (its uid where the system
 * has no name for it). Access to the data directory is what authorizes the CLI, so its reads are
 * not audited; every change is, refused ones included.
 */
export function cliActor(): Actor {
  let who: string;
  try {
    who = os.userInfo().username;
  } catch {
    who = String(process.getuid?.() ?? 'unknown');
  }
  return { name: `cli:${who}`, auditReads: false };
}

/**
 * The configuration and a quiet logger (warnings and worse, on stderr so that stdout stays the
 * command's output, unless HELLWALL_LOG_LEVEL says otherwise). With SQLite, a data directory that
 * has no database yet is about to get a new, empty one: said before it happens, since the likely
 * cause is running from another directory (the default data directory is ./data).
 */
export function localContext(ctx: Ctx): { config: Config; log: Logger; protocol?: Protocol } {
  const config = loadConfig(ctx.env);
  const log = createLogger(ctx.env.HELLWALL_LOG_LEVEL ?? 'warn', ctx.io.stderr, { pretty: Boolean(ctx.io.stderr.isTTY), env: ctx.env });
  if (!config.store.url && !existsSync(path.join(config.dataDir, DATABASE_FILE))) {
    ctx.warn(
      `${existsSync(config.dataDir) ? 'no database in' : 'no data directory'} ${config.dataDir}: creating a new, empty one ` +
        '(to use an existing one, pass --data-dir or set HELLWALL_DATA_DIR)',
    );
  }
  return { config, log, ...(ctx.io.protocol && { protocol: ctx.io.protocol }) };
}

/** Runs `fn` on the app built from the local configuration, and closes it (writing queued audit events). */
export async function withApp(ctx: Ctx, fn: (app: App) => Promise<number>): Promise<number> {
  const app = await createApp(localContext(ctx));
  try {
    return await fn(app);
  } finally {
    await app.close();
  }
}

/**
 * Runs one admin command through the same service the wire's admin commands use [P-4.12], so both
 * check, change and audit alike.
 */
export function withAdmin(ctx: Ctx, fn: (admin: AdminService, actor: Actor, app: App) => Promise<number>): Promise<number> {
  return withApp(ctx, (app) => fn(app.services.admin, cliActor(), app));
}
