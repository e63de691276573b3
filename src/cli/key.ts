import type { App } from '../app.js';
import type { AuditAction } from '../audit/audit-log.js';
import { KeyRingError, listKeys, retireKey, rotateKey } from '../keys/key-ring.js';
import type { AuditDetail, AuditOutcome } from '../store/store.js';
import { flag, JSON_OPTION, type Command, type Ctx, type Group } from './command.js';
import { EXIT, UsageError } from './errors.js';
import { cliActor, withApp } from './local.js';
import { isoTime, json, table } from './output.js';

// `hellwall key …`: the server key ring in the data directory, through the app (its clock, its
// random, its audit trail). Key material is never printed.

/**
 * Records a key command in the audit trail, after the fact: the key files are not in the database,
 * so the two cannot commit together. A row that cannot be written (the database locked too long)
 * is said on stderr with exit 1; the change itself stands.
 */
async function auditKey(ctx: Ctx, app: App, action: AuditAction & `admin.key.${string}`, outcome: AuditOutcome, detail: AuditDetail): Promise<number> {
  try {
    await app.store.transaction((tx) => app.audit.recordIn(tx, { action, outcome, actor: cliActor().name, detail }));
    return EXIT.ok;
  } catch (err) {
    ctx.note(`${action} was done, but its audit row could not be written: ${(err as Error).message}`);
    return EXIT.refused;
  }
}

const list: Command = {
  name: 'list',
  summary: 'server keys: id, status, when created and retired, live sessions made with each',
  local: true,
  options: JSON_OPTION,
  details: 'A retired key\'s file is deleted, so its creation time is no longer known ("-").',
  examples: ['hellwall key list', 'hellwall key list --json'],
  run: (ctx, args) =>
    withApp(ctx, async (app) => {
      const counts = await app.store.countSessionsByKey(app.clock());
      const rows = listKeys(app.config.dataDir).map((k) => ({
        id: k.id,
        status: k.status,
        createdAt: k.createdAt === null ? null : Math.round(k.createdAt),
        retiredAt: k.retiredAt === null ? null : Math.round(k.retiredAt),
        sessions: counts.get(k.id) ?? 0,
      }));
      if (flag(args, 'json')) ctx.out(json(rows));
      else ctx.out(table(['id', 'status', 'created', 'retired', 'sessions'], rows.map((r) => [r.id, r.status, isoTime(r.createdAt), isoTime(r.retiredAt), r.sessions])));
      return EXIT.ok;
    }),
};

const rotate: Command = {
  name: 'rotate',
  summary: 'add a new current server key (prints its id); then SIGHUP every running server',
  local: true,
  options: {},
  examples: ['hellwall key rotate && pkill -HUP -f "hellwall serve"'],
  run: (ctx) =>
    withApp(ctx, async (app) => {
      // The app is open first: a rotation must not happen where it could not be audited.
      const id = rotateKey(app.config.dataDir, app.random, app.log);
      ctx.out(String(id));
      ctx.io.stderr.write(`key ${id} is now the current key; send SIGHUP to every running server to start using it\n`);
      return auditKey(ctx, app, 'admin.key.rotate', 'success', { keyId: id });
    }),
};

const retire: Command = {
  name: 'retire',
  summary: 'retire an older key: its sessions are revoked (key-retired), its pending passcodes dropped',
  args: 'ID',
  local: true,
  options: {},
  details: 'Not the current key, nor one a running server still signs with (SIGHUP it first).',
  examples: ['hellwall key retire 1'],
  run: (ctx, args) => {
    const idText = args.positionals[0]!;
    const id = Number(idText);
    if (!/^\d+$/.test(idText) || !Number.isSafeInteger(id) || id < 1) throw new UsageError('key retire needs a key id (see hellwall key list)');
    return withApp(ctx, async (app) => {
      let r;
      try {
        r = await retireKey({ dataDir: app.config.dataDir, store: app.store, now: app.clock(), log: app.log }, id);
      } catch (err) {
        if (err instanceof KeyRingError) await auditKey(ctx, app, 'admin.key.retire', 'failure', { keyId: id, reason: err.code, message: err.message });
        throw err;
      }
      ctx.out(`key ${id} ${r.alreadyRetired ? 'was already retired' : 'retired'}: ${r.sessions} session(s) revoked, ${r.passcodes} pending passcode(s) dropped, ${r.secrets} sealed secret(s) re-sealed under the current key`);
      ctx.io.stderr.write('send SIGHUP to every running server so it drops the key from memory\n');
      return auditKey(ctx, app, 'admin.key.retire', 'success', {
        keyId: id,
        sessionsEnded: r.sessions,
        passcodesDropped: r.passcodes,
        secretsResealed: r.secrets,
        alreadyRetired: r.alreadyRetired,
      });
    });
  },
};

export const keyGroup: Group = {
  name: 'key',
  summary: 'the server key ring in the local data directory: list, rotate, retire',
  details: 'Every rotation and retirement (refused ones too) is recorded in the audit trail.',
  commands: [list, rotate, retire],
};
