import { flag, text, type Command, type Group } from './command.js';
import { EXIT, UsageError } from './errors.js';
import { localContext } from './local.js';
import { table } from './output.js';

/**
 * `hellwall store migrate`: the data directory's SQLite database into an empty PostgreSQL one. The
 * URL may come from $HELLWALL_STORE_URL instead of --to, which keeps its password out of `ps` and
 * the shell history; it is shown only masked.
 */
const migrate: Command = {
  name: 'migrate',
  summary: "copy the data directory's SQLite database into an empty PostgreSQL database",
  local: true,
  options: {
    to: { type: 'string', value: 'URL', help: 'the PostgreSQL database (default $HELLWALL_STORE_URL)' },
    yes: { type: 'boolean', help: 'copy (without it: check and print what would be copied, change nothing)' },
  },
  details: 'Ids are kept; all or nothing. Stop the server first.',
  examples: ['HELLWALL_STORE_URL=postgres://hellwall@db/hellwall hellwall store migrate', 'hellwall store migrate --yes'],
  run: async (ctx, args) => {
    // The SQLite file is the source: no new-database warning, the migration refuses a missing one.
    const { config, log } = localContext({ ...ctx, warn: () => {} });
    const url = text(args, 'to') ?? config.store.url;
    if (!url) throw new UsageError('--to postgres://… (or $HELLWALL_STORE_URL) is required');
    // Loaded only here: no other command needs the PostgreSQL driver.
    const { migrateSqliteToPostgres, StoreMigrateError } = await import('../store/migrate-sqlite-to-postgres.js');
    try {
      const report = await migrateSqliteToPostgres({ dataDir: config.dataDir, url, dryRun: !flag(args, 'yes'), connectTimeoutMs: config.store.connectTimeoutMs, log });
      const rows = report.tables.map((r) => (report.copied ? [r.table, r.sqlite, r.postgres] : [r.table, r.sqlite]));
      const next = Object.entries(report.nextIds).map(([t, n]) => `${t} ${n}`).join(', ');
      ctx.out(
        report.copied
          ? `copied ${report.source} (schema ${report.sqliteSchemaVersion}) into ${report.target} (schema ${report.postgresSchemaVersion})\n` +
              `${table(['table', 'sqlite', 'postgres'], rows)}\nrow counts verified; new ids start at ${next}`
          : `${report.source} (schema ${report.sqliteSchemaVersion}) can be copied into ${report.target}, which is empty\n` +
              `${table(['table', 'rows'], rows)}\n` +
              (report.sourceInUse ? 'a server (or another hellwall command) has the SQLite database open: stop it before copying\n' : '') +
              'nothing was changed: run again with --yes to copy',
      );
      if (report.copied) ctx.note('start the nodes with HELLWALL_STORE_URL set to it and this key ring; keep the SQLite file as a backup until they run');
      return EXIT.ok;
    } catch (err) {
      if (err instanceof StoreMigrateError) {
        ctx.note(err.message);
        return EXIT.refused;
      }
      throw err;
    }
  },
};

export const storeGroup: Group = {
  name: 'store',
  summary: 'the database: migrate (SQLite to PostgreSQL)',
  commands: [migrate],
};
