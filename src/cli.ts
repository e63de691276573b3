#!/usr/bin/env node
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import type { AuditAction } from './audit/audit-log.js';
import { checkAuditQuery, type Actor, type AdminService } from './services/admin-service.js';
import { normalizeEmail } from './primitives/normalize.js';
import { passwordPolicyWarning } from './primitives/passwords.js';
import { createApp, type App } from './app.js';
import { KeyRingError, listKeys, retireKey, rotateKey } from './keys/key-ring.js';
import { HellwallClient } from './client/client.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import type { Logger } from './deps.js';
import { createLogger } from './log.js';
import { serve } from './serve.js';
import { openStore } from './store/open.js';
import {
  DuplicateUserError,
  StoreBusyError,
  StoreConfigError,
  StoreUnavailableError,
  type AuditDetail,
  type AuditOutcome,
  type AuditQuery,
  type AuditRecord,
  type SessionRecord,
  type Store,
} from './store/store.js';
import { describeUser } from './services/users.js';
import { ServiceError } from './errors.js';
import { DEV_CERT_FILE } from './tls/tls-files.js';
import { COMMAND_CODES } from './protocol/messages.gen.js';

const USAGE = `Usage: hellwall <command> [options]

  serve                                   run the service (same as npm start)
  user add --email E --phone P [--role user|admin]
                                          add an operator; password from $HELLWALL_PASSWORD or a prompt
  user list [--json]                      every operator (never a password hash)
  user show --email E [--json]            one operator
  user disable --email E                  disable the account and end its sessions
  user enable --email E                   enable it again (ended sessions stay ended)
  user set-role --email E --role R        change the role (user, admin, or one the policy declares)
  user reset-password --email E           set a new password (as for add); ends every session
  user delete --email E --yes             delete the operator with every session
  key list [--json]                       server keys: id, created, status, live sessions made with each
  key rotate                              add a new current server key (prints its id); then SIGHUP
                                          every running server
  key retire ID                           retire an older key: its sessions are revoked (key-retired)
                                          and its pending passcodes dropped; not the current key
  sessions list [--email E] [--json]     active sessions (all operators, or one): id, operator, MAC,
                                          address, device, login and last use; never a token
  sessions revoke --id N | --email E      end one session, or every session of an operator
                                          (reason admin-revoked); the token answers unauthorized
  stats [--json]                          active sessions, active operators, expired sessions not yet
                                          cleaned up, pending passcodes, active sessions per operator
  audit [--email E] [--action A|PREFIX*] [--outcome success|failure|denied]
        [--since T] [--until T] [--limit N] [--before-id N] [--json]
                                          the audit trail, newest first (--limit: 1 to 1000, default
                                          100); T is an ISO-8601 date or time (UTC unless it names a
                                          zone) or an age like 30m, 12h, 7d; --before-id ID pages on
                                          past the last row shown
  cleanup [--json]                        delete expired passcodes, dead sessions and audit rows past
                                          audit.retentionDays now (what the server's housekeeping does
                                          every housekeeping.intervalSeconds)
  store migrate [--to URL] [--data-dir D] [--yes]
                                          copy the data directory's SQLite database into an empty
                                          PostgreSQL database (URL, or $HELLWALL_STORE_URL), ids kept,
                                          all or nothing; the server must be stopped. Without --yes:
                                          check and print what would be copied, change nothing
  client hello                            ask the server for its protocol version and limits
  client passcode --email E --mac M [--ip IP]
                                          request a passcode (password from $HELLWALL_PASSWORD or a prompt)
  client login --email E --phone P --mac M --passcode C
                                          exchange the passcode for a token (printed as JSON)
  client check --token T --mac M [--request NAME] [--data JSON]
                                          check a token (or set $HELLWALL_TOKEN instead of --token)

Client options: --host H (default from config), --port N, --ca FILE (default: the dev certificate
in the data directory), --servername NAME (the name to verify in the server's certificate, when
it is not --host: e.g. a health check through 127.0.0.1 of a certificate for hellwall.example). Configuration comes from HELLWALL_* environment variables; see README.md.

Every change made by the user, sessions and key commands, refused ones included, is recorded in the
audit trail with actor cli:<os user>. Exit codes: 0 done, 1 refused (message on stderr), 2 usage.`;

/** Reads a secret from the named env var, or from the terminal without echo. */
async function readSecret(env: NodeJS.ProcessEnv, prompt: string): Promise<string> {
  const fromEnv = env.HELLWALL_PASSWORD;
  if (fromEnv !== undefined) return fromEnv;
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    // Scripts may pipe the password: the first line of stdin.
    const chunks: Buffer[] = [];
    for await (const chunk of stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
  }
  // Echo goes off before the prompt appears: keys typed as soon as it shows must not be echoed.
  stdin.setRawMode(true);
  process.stderr.write(prompt);
  stdin.resume();
  let value = '';
  // 0: text; 1: after ESC; 2: inside a CSI sequence (arrow keys and the like send ESC [ ... final).
  let escape = 0;
  try {
    for await (const chunk of stdin) {
      for (const ch of (chunk as Buffer).toString('utf8')) {
        if (escape === 1) {
          escape = ch === '[' ? 2 : 0;
          continue;
        }
        if (escape === 2) {
          if (ch >= '@' && ch <= '~') escape = 0;
          continue;
        }
        if (ch === '\u001b') {
          escape = 1;
          continue;
        }
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return value; // Enter, or Ctrl-D
        if (ch === '\u0003') throw new CancelledError(); // Ctrl-C
        if (ch === '\u007f' || ch === '\b') value = [...value].slice(0, -1).join('');
        else if (ch >= ' ') value += ch; // other control characters (and escape sequences) are not part of a password
      }
    }
    return value;
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    process.stderr.write('\n');
  }
}

function need(values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${name} is required`);
  return v;
}

class UsageError extends Error {}
class CancelledError extends Error {}

async function userCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [sub, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    options: {
      email: { type: 'string' },
      phone: { type: 'string' },
      role: { type: 'string' },
      json: { type: 'boolean', default: false },
      yes: { type: 'boolean', default: false },
    },
  });
  if (!['add', 'list', 'show', 'disable', 'enable', 'set-role', 'reset-password', 'delete'].includes(sub ?? '')) {
    throw new UsageError(`unknown user command ${sub ?? ''}`);
  }
  return withAdmin(env, async (admin, actor, app) => {
    switch (sub) {
      case 'add': {
        const email = need(values, 'email');
        const phone = need(values, 'phone');
        const password = await readSecret(env, `Password for ${email}: `);
        const user = await admin.addUser(actor, { email, phone, role: values.role ?? 'user', password });
        out(`added ${user.role} ${user.email} (id ${user.id})`);
        const warning = passwordPolicyWarning(password);
        if (warning) process.stderr.write(`hellwall: warning: ${warning}\n`);
        return 0;
      }
      case 'list': {
        const users = (await admin.listUsers(actor)).map(describeUser);
        if (values.json) out(JSON.stringify(users));
        else out(table(['id', 'email', 'phone', 'role', 'disabled', 'created'], users.map((u) => [u.id, u.email, u.phone, u.role, u.disabled ? 'yes' : 'no', u.createdAt])));
        return 0;
      }
      case 'show': {
        const { user, activeSessions } = await admin.showUser(actor, need(values, 'email'));
        const view = { ...describeUser(user), activeSessions };
        const width = Math.max(...Object.keys(view).map((k) => k.length));
        out(values.json ? JSON.stringify(view) : Object.entries(view).map(([k, v]) => `${k.padEnd(width)}  ${String(v)}`).join('\n'));
        return 0;
      }
      case 'disable': {
        const { user, sessionsEnded } = await admin.disableUser(actor, need(values, 'email'));
        out(`disabled ${user.email}; ${sessionsEnded} session(s) ended`);
        return 0;
      }
      case 'enable':
        out(`enabled ${(await admin.enableUser(actor, need(values, 'email'))).email}`);
        return 0;
      case 'set-role': {
        const user = await admin.setRole(actor, need(values, 'email'), need(values, 'role'));
        out(`${user.email} is now ${user.role}`);
        return 0;
      }
      case 'reset-password': {
        const email = need(values, 'email');
        if (!(await app.store.findUserByEmail(normalizeEmail(email)))) {
          // Refused before asking for a password nobody could use, and through the service so that
          // the refusal is audited like any other: it looks the operator up before the password (and
          // an empty password could never pass the policy anyway).
          await admin.resetPassword(actor, email, '');
        }
        const password = await readSecret(env, `New password for ${email}: `);
        const { user, sessionsEnded } = await admin.resetPassword(actor, email, password);
        out(`password of ${user.email} changed; ${sessionsEnded} session(s) ended`);
        const warning = passwordPolicyWarning(password);
        if (warning) process.stderr.write(`hellwall: warning: ${warning}\n`);
        return 0;
      }
      default: {
        // delete: irreversible, so it wants --yes.
        const email = need(values, 'email');
        if (!values.yes) throw new UsageError(`user delete removes ${email} with every session: add --yes to confirm`);
        const user = await admin.deleteUser(actor, email);
        out(`deleted ${user.email} (id ${user.id})`);
        return 0;
      }
    }
  });
}

const out = (text: string): void => void process.stdout.write(`${text}\n`);

/**
 * The CLI in the audit trail: `cli:<os user>`, the account that ran it (its uid where the system
 * has no name for it). Access to the data directory is what authorizes the CLI, so its reads are
 * not audited; every change is, refused ones included.
 */
function cliActor(): Actor {
  let who: string;
  try {
    who = os.userInfo().username;
  } catch {
    who = String(process.getuid?.() ?? 'unknown');
  }
  return { name: `cli:${who}`, auditReads: false };
}

/**
 * Runs one admin command through the same service the wire's admin commands use [P-4.12], so both
 * check, change and audit alike; closing the app writes audit events still queued (refusals).
 */
async function withAdmin(env: NodeJS.ProcessEnv, fn: (admin: AdminService, actor: Actor, app: App) => Promise<number>): Promise<number> {
  const { config, log } = adminContext(env);
  const app = await createApp({ config, log });
  try {
    return await fn(app.services.admin, cliActor(), app);
  } finally {
    await app.close();
  }
}

/**
 * What every admin command starts from: the configuration and a quiet logger (warnings and worse on
 * stdout unless HELLWALL_LOG_LEVEL says otherwise), and the database of the data directory.
 */
function adminContext(env: NodeJS.ProcessEnv): { config: Config; log: Logger; openStore: () => Promise<Store> } {
  const config = loadConfig(env);
  const log = createLogger(env.HELLWALL_LOG_LEVEL ?? 'warn', undefined);
  return { config, log, openStore: () => openStore(config, log) };
}

/** A plain text table for people; scripts use --json. */
function table(head: string[], rows: Array<Array<string | number>>): string {
  const cells = [head, ...rows.map((r) => r.map(String))];
  const widths = head.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  return cells.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/** `hellwall key …`: the server key ring in the data directory. Key material is never printed. */
async function keyCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { json: { type: 'boolean', default: false } } });
  const { config, log, openStore } = adminContext(env);
  switch (sub) {
    case 'rotate': {
      // The database first: a rotation must not happen where it could not be audited.
      const store = await openStore();
      try {
        const id = rotateKey(config.dataDir, randomBytes, log);
        process.stdout.write(`${id}\n`);
        process.stderr.write(`key ${id} is now the current key; send SIGHUP to every running server to start using it\n`);
        return await auditKeyCommand(store, 'admin.key.rotate', 'success', { keyId: id });
      } finally {
        await store.close();
      }
    }
    case 'list': {
      const store = await openStore();
      let counts: Map<number, number>;
      try {
        counts = await store.countSessionsByKey(Date.now());
      } finally {
        await store.close();
      }
      const rows = listKeys(config.dataDir).map((k) => ({
        id: k.id,
        status: k.status,
        createdAt: k.createdAt === null ? null : new Date(k.createdAt).toISOString(),
        retiredAt: k.retiredAt === null ? null : new Date(k.retiredAt).toISOString(),
        sessions: counts.get(k.id) ?? 0,
      }));
      if (values.json) {
        process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
      } else {
        process.stdout.write('id  status     created                   sessions\n');
        for (const r of rows) {
          process.stdout.write(`${String(r.id).padEnd(3)} ${r.status.padEnd(10)} ${(r.createdAt ?? r.retiredAt ?? '-').padEnd(25)} ${r.sessions}\n`);
        }
      }
      return 0;
    }
    case 'retire': {
      const [idText] = positionals;
      const id = Number(idText);
      if (!idText || !Number.isInteger(id) || id < 1) throw new UsageError('key retire needs a key id (see hellwall key list)');
      const store = await openStore();
      try {
        let r;
        try {
          r = await retireKey({ dataDir: config.dataDir, store, now: Date.now(), log }, id);
        } catch (err) {
          if (err instanceof KeyRingError) await auditKeyCommand(store, 'admin.key.retire', 'failure', { keyId: id, reason: err.code, message: err.message });
          throw err;
        }
        process.stdout.write(
          `key ${id} ${r.alreadyRetired ? 'was already retired' : 'retired'}: ${r.sessions} session(s) revoked, ${r.passcodes} pending passcode(s) dropped\n`,
        );
        process.stderr.write('send SIGHUP to every running server so it drops the key from memory\n');
        return await auditKeyCommand(store, 'admin.key.retire', 'success', {
          keyId: id,
          sessionsEnded: r.sessions,
          passcodesDropped: r.passcodes,
          alreadyRetired: r.alreadyRetired,
        });
      } finally {
        await store.close();
      }
    }
    default:
      throw new UsageError(`unknown key command ${sub ?? ''}`);
  }
}

/**
 * Records a key command in the audit trail, after the fact: the key files are not in the database,
 * so the two cannot commit together. A row that cannot be written (the database locked too long)
 * is said on stderr with exit 1, the change itself stands.
 */
async function auditKeyCommand(store: Store, action: AuditAction & `admin.key.${string}`, outcome: AuditOutcome, detail: AuditDetail): Promise<number> {
  try {
    await store.appendAudit([{ at: Date.now(), action, outcome, actor: cliActor().name, detail }]);
    return 0;
  } catch (err) {
    process.stderr.write(`hellwall: ${action} was done, but its audit row could not be written: ${(err as Error).message}\n`);
    return 1;
  }
}

/** `hellwall sessions …`: what operators see and end of the sessions table; never a token. */
async function sessionsCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [sub, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    options: { email: { type: 'string' }, id: { type: 'string' }, json: { type: 'boolean', default: false } },
  });
  if (sub !== 'list' && sub !== 'revoke') throw new UsageError(`unknown sessions command ${sub ?? ''}`);
  if (sub === 'revoke' && (values.id === undefined) === (values.email === undefined)) {
    throw new UsageError('sessions revoke needs --id N or --email E (one of them)');
  }
  const id = values.id === undefined ? undefined : wholeNumber(values.id, '--id');
  return withAdmin(env, async (admin, actor) => {
    if (sub === 'list') {
      const rows = (await admin.listSessions(actor, values.email)).map(describeSession);
      if (values.json) out(JSON.stringify(rows));
      else out(table(['id', 'email', 'mac', 'ip', 'device', 'created', 'last seen'], rows.map((r) => [r.id, r.email, r.mac, r.ip, r.device ?? '-', r.createdAt, r.lastSeenAt])));
      return 0;
    }
    if (id !== undefined) {
      const session = await admin.revokeSession(actor, id);
      out(`session ${session.id} of ${session.userEmail} ended`);
      return 0;
    }
    const { user, ended } = await admin.revokeUserSessions(actor, values.email!);
    out(`${ended} session(s) of ${user.email} ended`);
    return 0;
  });
}

function describeSession(s: SessionRecord): { id: number; email: string; mac: string; ip: string; device: string | null; createdAt: string; lastSeenAt: string } {
  return {
    id: s.id,
    email: s.userEmail,
    mac: s.mac,
    ip: s.ip,
    device: s.device,
    createdAt: new Date(s.createdAt).toISOString(),
    lastSeenAt: new Date(s.lastSeenAt).toISOString(),
  };
}

/** `hellwall stats`: counts an operator asks for first; read-only. */
async function statsCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = parseArgs({ args, options: { json: { type: 'boolean', default: false } } });
  return withAdmin(env, async (admin, actor) => {
    const stats = await admin.stats(actor);
    if (values.json) {
      out(JSON.stringify(stats));
    } else {
      const lines = [
        `active sessions    ${stats.activeSessions}`,
        `active users       ${stats.activeUsers}`,
        `expired sessions   ${stats.expiredSessions}`,
        `pending passcodes  ${stats.pendingPasscodes}`,
      ];
      if (stats.activeUsers > 0) lines.push('', table(['email', 'sessions'], Object.entries(stats.sessionsPerUser)));
      out(lines.join('\n'));
    }
    return 0;
  });
}

/**
 * `hellwall audit`: the audit trail, newest first. What the CLI parses itself (times, numbers) is
 * a usage error (exit 2); what the admin service refuses (an unknown outcome, a malformed action,
 * since not before until, a limit out of range) exits 1 with its message, as on the wire.
 */
async function auditCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      email: { type: 'string' },
      action: { type: 'string' },
      outcome: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      limit: { type: 'string' },
      'before-id': { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const now = Date.now();
  const query: Partial<AuditQuery> = {
    ...(values.email !== undefined && { email: values.email }),
    ...(values.action !== undefined && { action: values.action }),
    ...(values.outcome !== undefined && { outcome: values.outcome as AuditOutcome }),
    ...(values.since !== undefined && { since: parseTime(values.since, '--since', now) }),
    ...(values.until !== undefined && { until: parseTime(values.until, '--until', now) }),
    ...(values.limit !== undefined && { limit: wholeNumber(values.limit, '--limit') }),
    ...(values['before-id'] !== undefined && { beforeId: wholeNumber(values['before-id'], '--before-id') }),
  };
  // Checked before anything is opened; the service checks again (it does for the wire).
  const { limit } = checkAuditQuery(query);
  return withAdmin(env, async (admin, actor) => {
    const rows = await admin.queryAudit(actor, query);
    if (values.json) {
      out(JSON.stringify(rows.map(auditJson)));
      return 0;
    }
    out(
      table(
        ['id', 'time', 'action', 'outcome', 'email', 'actor', 'ip', 'mac', 'session', 'detail'],
        rows.map((r) =>
          [r.id, new Date(r.at).toISOString(), r.action, r.outcome, r.email, r.actor, r.ip, r.mac, r.sessionId, compactDetail(r.detail)].map((c) =>
            c === null || c === '' ? '-' : printable(String(c)),
          ),
        ),
      ),
    );
    if (rows.length === limit) process.stderr.write(`hellwall: ${limit} rows shown (the limit); older ones: --before-id ${rows.at(-1)!.id}\n`);
    return 0;
  });
}

/** An audit row for scripts: every field, `at` as an ISO-8601 string, `detail` as an object. */
function auditJson(r: AuditRecord): Record<string, unknown> {
  return { id: r.id, at: new Date(r.at).toISOString(), action: r.action, outcome: r.outcome, userId: r.userId, email: r.email, actor: r.actor, ip: r.ip, mac: r.mac, sessionId: r.sessionId, detail: r.detail };
}

/** `key=value` pairs on one line; a value with spaces, quotes or `=` is quoted as JSON. */
function compactDetail(detail: AuditDetail | null): string {
  if (!detail) return '';
  return Object.entries(detail)
    .map(([k, v]) => `${k}=${typeof v === 'string' && !/^[^\s"=]+$/.test(v) ? JSON.stringify(v) : String(v)}`)
    .join(' ');
}

/**
 * Audit rows hold what unauthenticated clients sent (an email may carry an ESC byte): control and
 * bidirectional-override characters are shown escaped, so a row cannot rewrite the terminal.
 */
function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

const AGE = /^(\d{1,9})([smhdw])$/;
const AGE_MS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const ISO_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,3})?)?(Z|[+-]\d{2}:?\d{2})?)?$/i;

/**
 * A point in time for --since/--until: an ISO-8601 date (`2025-03-01`, midnight UTC) or date and
 * time (`2025-03-01T14:30`, UTC unless it names a zone, as the audit output shows times), or an age
 * (`90s`, `30m`, `12h`, `7d`, `2w`: now minus that).
 */
export function parseTime(text: string, option: string, now: number): number {
  const age = AGE.exec(text);
  if (age) return now - Number(age[1]) * AGE_MS[age[2]!]!;
  const m = ISO_TIME.exec(text);
  if (m) {
    const [, y, mo, d, h = '00', mi = '00', sec = '00', frac = '', zone = 'Z'] = m;
    const day = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
    // Date.parse would roll 2025-02-30 over into March; a date that does not exist is refused.
    const real = day.getUTCFullYear() === Number(y) && day.getUTCMonth() === Number(mo) - 1 && day.getUTCDate() === Number(d);
    const offset = zone.toUpperCase() === 'Z' ? 'Z' : `${zone.slice(0, 3)}:${zone.slice(-2)}`;
    const ms = Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${sec}${frac}${offset}`);
    if (real && Number.isFinite(ms)) return ms;
  }
  throw new UsageError(`${option} must be an ISO-8601 date or time (2025-03-01, 2025-03-01T14:30:00Z) or an age such as 30m, 12h, 7d; not ${JSON.stringify(text)}`);
}

function wholeNumber(text: string, option: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n)) throw new UsageError(`${option} must be a whole number, not ${JSON.stringify(text)}`);
  return n;
}

/** `hellwall cleanup`: one housekeeping pass, to completion, beside a running server or without one. */
async function cleanupCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = parseArgs({ args, options: { json: { type: 'boolean', default: false } } });
  const { config, log } = adminContext(env);
  const app = await createApp({ config, log });
  try {
    const pass = await app.housekeeper.runOnce();
    if (values.json) {
      process.stdout.write(JSON.stringify({ deleted: pass.deleted, batches: pass.batches, busy: pass.busy }) + '\n');
    } else {
      const rows = Object.entries(pass.deleted) as Array<[string, number]>;
      const width = Math.max(...rows.map(([k]) => k.length));
      process.stdout.write(rows.map(([k, n]) => `${k.padEnd(width)}  ${n}`).join('\n') + '\n');
    }
    if (pass.busy) {
      process.stderr.write('hellwall: the database stayed locked by another writer; the counts above are partial: run cleanup again\n');
      return 1;
    }
    return 0;
  } finally {
    await app.close();
  }
}

/**
 * `hellwall store migrate`: the data directory's SQLite database into an empty PostgreSQL one. The
 * URL may come from $HELLWALL_STORE_URL instead of --to, which keeps its password out of `ps` and
 * the shell history; it is shown only masked.
 */
async function storeCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== 'migrate') throw new UsageError(`unknown store command ${sub ?? ''}`);
  const { values } = parseArgs({
    args: rest,
    options: { to: { type: 'string' }, 'data-dir': { type: 'string' }, yes: { type: 'boolean', default: false } },
  });
  const { config, log } = adminContext(values['data-dir'] === undefined ? env : { ...env, HELLWALL_DATA_DIR: values['data-dir'] });
  const url = values.to ?? config.store.url;
  if (!url) throw new UsageError('--to postgres://… (or $HELLWALL_STORE_URL) is required');
  // Loaded only here: no other command needs the PostgreSQL driver.
  const { migrateSqliteToPostgres, StoreMigrateError } = await import('./store/migrate-sqlite-to-postgres.js');
  try {
    const report = await migrateSqliteToPostgres({ dataDir: config.dataDir, url, dryRun: !values.yes, connectTimeoutMs: config.store.connectTimeoutMs, log });
    const rows = report.tables.map((r) => (report.copied ? [r.table, r.sqlite, r.postgres] : [r.table, r.sqlite]));
    const next = Object.entries(report.nextIds).map(([t, n]) => `${t} ${n}`).join(', ');
    process.stdout.write(
      report.copied
        ? `copied ${report.source} (schema ${report.sqliteSchemaVersion}) into ${report.target} (schema ${report.postgresSchemaVersion})\n` +
            `${table(['table', 'sqlite', 'postgres'], rows)}\nrow counts verified; new ids start at ${next}\n`
        : `${report.source} (schema ${report.sqliteSchemaVersion}) can be copied into ${report.target}, which is empty\n` +
            `${table(['table', 'rows'], rows)}\n` +
            (report.sourceInUse ? 'a server (or another hellwall command) has the SQLite database open: stop it before copying\n' : '') +
            'nothing was changed: run again with --yes to copy\n',
    );
    if (report.copied) {
      process.stderr.write('hellwall: start the nodes with HELLWALL_STORE_URL set to it and this key ring; keep the SQLite file as a backup until they run\n');
    }
    return 0;
  } catch (err) {
    if (err instanceof StoreMigrateError) {
      process.stderr.write(`hellwall: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

async function clientCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [sub, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      ca: { type: 'string' },
      servername: { type: 'string' },
      email: { type: 'string' },
      phone: { type: 'string' },
      mac: { type: 'string' },
      ip: { type: 'string' },
      passcode: { type: 'string' },
      token: { type: 'string' },
      request: { type: 'string', default: 'cli.check' },
      data: { type: 'string' },
    },
  });
  const config = loadConfig(env);
  const caFile = values.ca ?? path.join(config.dataDir, DEV_CERT_FILE);
  if (!existsSync(caFile)) throw new UsageError(`no CA file ${caFile}: pass --ca (the server's certificate or its CA)`);
  const host = values.host ?? config.host;
  const port = values.port ? Number(values.port) : config.port;
  let message: Record<string, unknown>;
  switch (sub) {
    case 'hello':
      message = { code: COMMAND_CODES.hello };
      break;
    case 'passcode':
      message = {
        code: COMMAND_CODES['passcode.request'],
        email: need(values, 'email'),
        mac: need(values, 'mac'),
        password: await readSecret(env, 'Password: '),
        ...(values.ip && { ip: values.ip }),
      };
      break;
    case 'login':
      message = {
        code: COMMAND_CODES['passcode.auth'],
        email: need(values, 'email'),
        phone: need(values, 'phone'),
        mac: need(values, 'mac'),
        passcode: need(values, 'passcode'),
        password: await readSecret(env, 'Password: '),
      };
      break;
    case 'check': {
      // $HELLWALL_TOKEN keeps the token out of `ps` and shell history.
      const token = values.token ?? env.HELLWALL_TOKEN;
      if (!token) throw new UsageError('--token (or $HELLWALL_TOKEN) is required');
      let data: unknown;
      try {
        data = values.data === undefined ? undefined : JSON.parse(values.data);
      } catch {
        throw new UsageError('--data must be JSON');
      }
      message = { code: COMMAND_CODES['token.check'], token, mac: need(values, 'mac'), request: values.request, ...(data !== undefined && { data }) };
      break;
    }
    default:
      throw new UsageError(`unknown client command ${sub ?? ''}`);
  }
  const client = await HellwallClient.connect({ host, port, ca: readFileSync(caFile), ...(values.servername && { servername: values.servername }) });
  try {
    const res = await client.send(message);
    process.stdout.write(JSON.stringify(res, null, 2) + '\n');
    return ['ok', 'authorized', 'renew'].includes(res.status) ? 0 : 1;
  } finally {
    await client.close();
  }
}

/** Entry point for every subcommand; resolves to the exit code. */
export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'serve':
        return await serve(env);
      case 'user':
        return await userCommand(rest, env);
      case 'client':
        return await clientCommand(rest, env);
      case 'key':
        return await keyCommand(rest, env);
      case 'cleanup':
        return await cleanupCommand(rest, env);
      case 'store':
        return await storeCommand(rest, env);
      case 'sessions':
        return await sessionsCommand(rest, env);
      case 'stats':
        return await statsCommand(rest, env);
      case 'audit':
        return await auditCommand(rest, env);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE + '\n');
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command ${command}`);
    }
  } catch (err) {
    if (err instanceof CancelledError) {
      process.stderr.write('\nhellwall: cancelled\n');
      return 130;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`hellwall: ${err.message}\n\n${USAGE}\n`);
      return 2;
    }
    if (err instanceof ConfigError || err instanceof ServiceError || err instanceof DuplicateUserError || err instanceof KeyRingError) {
      process.stderr.write(`hellwall: ${err.message}\n`);
      return 1;
    }
    // The database as configured cannot be opened, or cannot be reached or is busy now.
    if (err instanceof StoreConfigError || err instanceof StoreUnavailableError || err instanceof StoreBusyError) {
      process.stderr.write(`hellwall: ${err.message}\n`);
      return 1;
    }
    if (String((err as NodeJS.ErrnoException).code).startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`hellwall: ${(err as Error).message}\n`);
      return 2;
    }
    throw err;
  }
}

// Run only when executed, not when imported.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  // Exit explicitly (stdout and stderr writes are synchronous on Linux, so nothing is lost): after
  // `serve`, a mail delivery abandoned at shutdown may hold a socket open.
  process.exit(await main(process.argv.slice(2), process.env));
}
