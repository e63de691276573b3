import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { DATABASE_FILE } from '../../src/app.js';
import { HellwallClient } from '../../src/client/client.js';
import { DEV_CERT_FILE } from '../../src/tls/tls-files.js';
import { env, startServer, type RunningServer } from '../helpers/processes.js';
import { runCli } from '../helpers/cli.js';

/*
 * [abuse resistance] An acknowledged login must survive a crash. Clients log in and check tokens
 * as fast as they can; once enough logins are acknowledged, and while more logins and checks are
 * in flight, the server is SIGKILLed and restarted on the same data directory. Every token whose
 * login answer the client received must still check `authorized`, and the database must be sound.
 * Real processes (dist/main.js, dist/cli.js), production scrypt, the outbox mailer.
 */

const PASSWORD = 'correct horse battery staple';
const USERS = 8;
const ROUNDS = 3;
// Acknowledged logins a round waits for before it kills: enough to mean something, few enough that
// production scrypt (~100 ms per hash, two at a time) keeps the suite well under a minute.
const ACKED_PER_ROUND = 5;
const CHECKS_PER_BURST = 16;
// Connections that do nothing but pipelined token checks over every acknowledged session.
const CHECKERS = 1;
const CHECKER_BURST = 32;

interface User {
  readonly email: string;
  readonly phone: string;
  readonly mac: string;
}

interface Acked {
  readonly user: User;
  readonly token: string;
  readonly round: number;
}

const users: User[] = Array.from({ length: USERS }, (_, i) => ({
  email: `crash${i}@example.com`,
  phone: `+1 555 01${String(i).padStart(2, '0')}`,
  mac: `02:00:00:00:00:${i.toString(16).padStart(2, '0')}`,
}));

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The outbox files addressed to `email` (by their To: header), by name. */
function mailsTo(outbox: string, email: string): Map<string, string> {
  const out = new Map<string, string>();
  let names: string[] = [];
  try {
    names = readdirSync(outbox).filter((f) => f.endsWith('.eml'));
  } catch {
    return out; // not created yet
  }
  for (const name of names) {
    let text: string;
    try {
      text = readFileSync(path.join(outbox, name), 'utf8');
    } catch {
      continue;
    }
    const to = /^To: (.*)$/im.exec(text)?.[1]?.trim();
    if (to === email) out.set(name, text);
  }
  return out;
}

/** Waits for a message to `email` that is not in `before`, and returns its passcode. */
async function newPasscode(outbox: string, email: string, before: Map<string, string>, stop: () => boolean): Promise<string | null> {
  for (let i = 0; i < 400 && !stop(); i++) {
    for (const [name, text] of mailsTo(outbox, email)) {
      if (before.has(name)) continue;
      // A file can be seen half-written; try again on the next poll.
      const passcode = /passcode is: ([A-Z0-9]{6})/.exec(text)?.[1];
      if (passcode) return passcode;
    }
    await sleep(10);
  }
  return null;
}

/** PRAGMA integrity_check and foreign_key_check on `file`, through a read-only connection. */
function soundness(file: string): { integrity: unknown; foreignKeys: unknown[] } {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const integrity = (db.pragma('integrity_check') as Array<{ integrity_check: string }>).map((r) => r.integrity_check).join('; ');
    return { integrity, foreignKeys: db.pragma('foreign_key_check') as unknown[] };
  } finally {
    db.close();
  }
}

t.test('every acknowledged login survives SIGKILL and restart, and the database stays sound', async (t) => {
  const started = Date.now();
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-crash-'));
  const e = env(dataDir, { HELLWALL_PORT: '0' });
  const outbox = path.join(dataDir, 'outbox');
  const dbFile = path.join(dataDir, DATABASE_FILE);
  let server: RunningServer | null = null;
  t.teardown(() => {
    server?.child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  for (const u of users) {
    const add = await runCli(['user', 'add', '--email', u.email, '--phone', u.phone], { ...e, HELLWALL_PASSWORD: PASSWORD });
    t.equal(add.code, 0, add.stderr);
  }

  const acked: Acked[] = [];
  const stats = { passcodes: 0, logins: 0, checks: 0, loginsInFlightAtKill: [] as number[], checksInFlightAtKill: [] as number[] };
  const preKillFailures: string[] = [];

  for (let round = 1; round <= ROUNDS; round++) {
    server = await startServer(e);
    const ca = readFileSync(path.join(dataDir, DEV_CERT_FILE));
    const port = server.port;
    const connect = (): Promise<HellwallClient> => HellwallClient.connect({ host: '127.0.0.1', port, ca });

    // Before any load: everything acknowledged in earlier rounds, i.e. before each earlier kill.
    if (acked.length > 0) {
      const c = await connect();
      const answers = await Promise.all(acked.map((a) => c.check({ token: a.token, mac: a.user.mac, request: 'crash.verify' })));
      const lost = acked.filter((_, i) => answers[i]!.status !== 'authorized').map((a) => `${a.user.email} (round ${a.round})`);
      t.same(lost, [], `after restart ${round - 1}: all ${acked.length} acknowledged sessions check authorized`);
      c.destroy();
    }

    let killed = false;
    let loginsInFlight = 0;
    let checksInFlight = 0;
    let ackedThisRound = 0;
    const clientErrors: string[] = [];

    const worker = async (u: User): Promise<void> => {
      const c = await connect();
      const mine: Acked[] = acked.filter((a) => a.user === u);
      try {
        while (!killed) {
          const before = mailsTo(outbox, u.email);
          const req = await c.requestPasscode({ email: u.email, password: PASSWORD, mac: u.mac });
          if (req.status !== 'ok') throw new Error(`passcode request answered ${JSON.stringify(req)}`);
          stats.passcodes++;
          const passcode = await newPasscode(outbox, u.email, before, () => killed);
          if (passcode === null) {
            if (!killed) throw new Error(`no passcode mail for ${u.email}`);
            return;
          }
          loginsInFlight++;
          let login;
          try {
            login = await c.login({ email: u.email, phone: u.phone, password: PASSWORD, passcode, mac: u.mac });
          } finally {
            loginsInFlight--;
          }
          if (login.status !== 'ok') throw new Error(`login answered ${JSON.stringify(login)}`);
          // Only now is the login acknowledged: the client holds the answer.
          const a: Acked = { user: u, token: login.token, round };
          acked.push(a);
          mine.push(a);
          ackedThisRound++;
          stats.logins++;
          // A tight pipelined burst of checks over this user's sessions.
          const burst = Array.from({ length: CHECKS_PER_BURST }, (_, i) => mine[i % mine.length]!);
          checksInFlight += burst.length;
          const answers = await Promise.all(burst.map((s) => c.check({ token: s.token, mac: u.mac, request: 'crash.load' }).finally(() => checksInFlight--)));
          stats.checks += answers.length;
          for (const [i, r] of answers.entries()) {
            if (r.status !== 'authorized') preKillFailures.push(`${burst[i]!.user.email}: ${JSON.stringify(r)}`);
          }
        }
      } catch (err) {
        // After the kill every request in flight fails with the connection; that is expected.
        if (!killed) clientErrors.push(`${u.email}: ${(err as Error).message}`);
      } finally {
        c.destroy();
      }
    };

    const checker = async (n: number): Promise<void> => {
      const c = await connect();
      try {
        for (let k = n; !killed; k += CHECKER_BURST) {
          if (acked.length === 0) {
            await sleep(5);
            continue;
          }
          const burst = Array.from({ length: CHECKER_BURST }, (_, i) => acked[(k + i) % acked.length]!);
          checksInFlight += burst.length;
          const answers = await Promise.all(burst.map((s) => c.check({ token: s.token, mac: s.user.mac, request: 'crash.load' }).finally(() => checksInFlight--)));
          stats.checks += answers.length;
          for (const [i, r] of answers.entries()) {
            if (r.status !== 'authorized') preKillFailures.push(`${burst[i]!.user.email}: ${JSON.stringify(r)}`);
          }
        }
      } catch (err) {
        if (!killed) clientErrors.push(`checker ${n}: ${(err as Error).message}`);
      } finally {
        c.destroy();
      }
    };

    const workers = [...users.map((u) => worker(u)), ...Array.from({ length: CHECKERS }, (_, n) => checker(n))];
    // Kill once enough logins are acknowledged, at a moment when a login is in flight.
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && clientErrors.length === 0 && !(ackedThisRound >= ACKED_PER_ROUND && loginsInFlight > 0)) await sleep(1);
    t.same(clientErrors, [], `round ${round}: no client failed before the kill`);
    t.ok(ackedThisRound >= ACKED_PER_ROUND, `round ${round}: ${ackedThisRound} logins acknowledged before the kill`);
    stats.loginsInFlightAtKill.push(loginsInFlight);
    stats.checksInFlightAtKill.push(checksInFlight);
    server.child.kill('SIGKILL');
    killed = true;
    const code = await server.exited;
    t.equal(code, null, `round ${round}: the server died by signal`);
    t.notOk(server.lines.some((l) => l.msg === 'hellwall stopped'), 'it did not shut down cleanly');
    await Promise.all(workers);
    t.same(clientErrors, [], `round ${round}: clients saw only the connection drop`);
    server = null;
    // The crashed state itself, WAL and all, before the next start recovers it. Read-only: this
    // connection neither checkpoints nor removes the WAL, so the restart still does its own recovery.
    t.same(soundness(dbFile), { integrity: 'ok', foreignKeys: [] }, `round ${round}: the database as the kill left it is sound`);
  }
  t.same(preKillFailures.slice(0, 5), [], 'every check before a kill answered authorized');

  // The last restart: check all sessions, then stop cleanly and inspect the database file.
  server = await startServer(e);
  const ca = readFileSync(path.join(dataDir, DEV_CERT_FILE));
  const c = await HellwallClient.connect({ host: '127.0.0.1', port: server.port, ca });
  const answers = await Promise.all(acked.map((a) => c.check({ token: a.token, mac: a.user.mac, request: 'crash.verify' })));
  const lost = acked.flatMap((a, i) => (answers[i]!.status === 'authorized' ? [] : [`${a.user.email} (round ${a.round}): ${JSON.stringify(answers[i])}`]));
  t.same(lost, [], `after restart ${ROUNDS}: all ${acked.length} acknowledged sessions check authorized`);
  // The check can fail: a token this server never issued is refused on the same path.
  const forged = await c.check({ token: `Awfer_hellwall_${'A'.repeat(43)}`, mac: users[0]!.mac, request: 'crash.verify' });
  t.equal(forged.status, 'unauthorized', 'an unknown token is refused, so "authorized" above means something');
  c.destroy();
  const errors = server.lines.filter((l) => (l.level as number) >= 50);
  t.same(errors, [], 'the restarted server logged no errors');
  server.child.kill('SIGTERM');
  t.equal(await server.exited, 0, 'SIGTERM stops the restarted server cleanly');
  server = null;

  t.same(soundness(dbFile), { integrity: 'ok', foreignKeys: [] }, 'after the clean stop: PRAGMA integrity_check is ok, foreign_key_check finds nothing');
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    const sessions = db.prepare('SELECT count(*) FROM sessions').pluck().get() as number;
    t.ok(sessions >= acked.length, `the database holds ${sessions} sessions for ${acked.length} acknowledged logins`);
  } finally {
    db.close();
  }
  t.comment(
    `${ROUNDS} kills; ${stats.passcodes} passcode requests, ${stats.logins} acknowledged logins, ${stats.checks} checks; ` +
      `in flight at each kill: logins ${stats.loginsInFlightAtKill.join('/')}, checks ${stats.checksInFlightAtKill.join('/')}; ${Date.now() - started} ms`,
  );
});
