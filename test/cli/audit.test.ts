import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { HellwallClient } from '../../src/client/client.js';
import { env, startServer } from '../helpers/processes.js';
import { runCli, auditJson, type AuditRow } from '../helpers/cli.js';

// The audit rows the CLI's own changes leave, and those a running server (another process) leaves
// for a login, as `hellwall audit` shows them. Its filters: audit-query.test.ts.

const PASSWORD = 'correct horse battery staple';
const NEW_PASSWORD = 'a brand new passphrase 42';
const PHONE = '+1 555 0100';
const MAC = '00:1a:2b:3c:4d:5e';
const ACTOR = `cli:${os.userInfo().username}`;

/** Every byte of the database, its WAL included: where a password must never be, even in free pages. */
function databaseBytes(dataDir: string): string {
  return readdirSync(dataDir)
    .filter((f) => f.startsWith('hellwall.db'))
    .map((f) => readFileSync(path.join(dataDir, f)).toString('latin1'))
    .join('');
}

t.test('every change the CLI makes is audited as cli:<os user>, and each refusal as a failure with exit 1', async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-audit-'));
  const e = env(dataDir);
  const outputs: string[] = [];
  const run = async (args: string[], code: number, more: Record<string, string> = {}) => {
    const r = await runCli(args, { ...e, ...more });
    outputs.push(r.stdout, r.stderr);
    t.equal(r.code, code, `hellwall ${args.join(' ')} exits ${code}: ${r.stderr.split('\n')[0]}`);
    return r;
  };
  const pw = { HELLWALL_PASSWORD: PASSWORD };

  await run(['user', 'add', '--email', 'ann@example.com', '--phone', PHONE], 0, pw);
  t.match((await run(['user', 'add', '--email', 'ANN@example.com', '--phone', PHONE], 1, pw)).stderr, /already exists/);
  await run(['user', 'add', '--email', 'bob@example.com', '--phone', PHONE], 0, pw);
  await run(['user', 'add', '--email', 'not-an-email', '--phone', PHONE], 1, pw);
  t.match((await run(['user', 'disable', '--email', 'ann@example.com'], 0)).stdout, /disabled ann@example\.com; 0 session\(s\) ended/);
  t.match((await run(['user', 'disable', '--email', 'ann@example.com'], 1)).stderr, /^hellwall: ann@example\.com is already disabled\n$/);
  await run(['user', 'enable', '--email', 'ann@example.com'], 0);
  t.match((await run(['user', 'enable', '--email', 'ann@example.com'], 1)).stderr, /ann@example\.com is not disabled/);
  await run(['user', 'set-role', '--email', 'ann@example.com', '--role', 'admin'], 0);
  t.match((await run(['user', 'set-role', '--email', 'nobody@example.com', '--role', 'admin'], 1)).stderr, /no user with email nobody@example\.com/);
  await run(['user', 'reset-password', '--email', 'ann@example.com'], 0, { HELLWALL_PASSWORD: NEW_PASSWORD });
  const unknownReset = await run(['user', 'reset-password', '--email', 'nobody@example.com'], 1);
  t.notMatch(unknownReset.stderr, /New password/, 'refused before asking for a password');
  await run(['user', 'delete', '--email', 'bob@example.com', '--yes'], 0);
  await run(['user', 'delete', '--email', 'nobody@example.com', '--yes'], 1);
  t.match((await run(['sessions', 'revoke', '--id', '7'], 1)).stderr, /no session with id 7/);
  t.match((await run(['sessions', 'revoke', '--email', 'ann@example.com'], 0)).stdout, /0 session\(s\) of ann@example\.com ended/);
  await run(['sessions', 'revoke', '--email', 'nobody@example.com'], 1);
  // Usage errors change nothing and are not audited.
  await run(['user', 'delete', '--email', 'ann@example.com'], 2);
  await run(['sessions', 'revoke', '--id', 'x'], 2);

  // The operator's own mail alerts (alert.*, actor null) are another feature's rows: left out here.
  const rows = (await auditJson(e)).reverse().filter((r) => !r.action.startsWith('alert.'));
  t.same(
    rows.map((r) => [r.action, r.outcome, r.email, r.detail?.reason ?? null]),
    [
      ['admin.user.add', 'success', 'ann@example.com', null],
      ['admin.user.add', 'failure', 'ann@example.com', 'conflict'],
      ['admin.user.add', 'success', 'bob@example.com', null],
      ['admin.user.add', 'failure', 'not-an-email', 'invalid'],
      ['admin.user.disable', 'success', 'ann@example.com', null],
      ['admin.user.disable', 'failure', 'ann@example.com', 'conflict'],
      ['admin.user.enable', 'success', 'ann@example.com', null],
      ['admin.user.enable', 'failure', 'ann@example.com', 'conflict'],
      ['admin.user.set_role', 'success', 'ann@example.com', null],
      ['admin.user.set_role', 'failure', 'nobody@example.com', 'not-found'],
      ['admin.user.reset_password', 'success', 'ann@example.com', null],
      ['admin.user.reset_password', 'failure', 'nobody@example.com', 'not-found'],
      ['admin.user.delete', 'success', 'bob@example.com', null],
      ['admin.user.delete', 'failure', 'nobody@example.com', 'not-found'],
      ['admin.session.revoke', 'failure', null, 'not-found'],
      ['admin.session.revoke_user', 'success', 'ann@example.com', null],
      ['admin.session.revoke_user', 'failure', 'nobody@example.com', 'not-found'],
    ],
  );
  t.ok(rows.every((r) => r.actor === ACTOR && r.ip === null && r.mac === null && r.sessionId === null), `every row's actor is ${ACTOR}`);
  t.ok(rows.every((r, i) => i === 0 || r.id > rows[i - 1]!.id), 'ids rise with time');
  t.match(rows[0], { userId: 1, detail: { role: 'user' } });
  t.match(rows[4], { userId: 1, detail: { sessionsEnded: 0 } });
  t.match(rows[8], { detail: { from: 'user', to: 'admin' } });
  t.match(rows[10], { detail: { sessionsEnded: 0 } });
  t.match(rows[14], { detail: { target: 7 } });
  t.match(rows[15], { detail: { ended: 0 } });

  // The CLI's reads need the database anyway: they are not audited (on the wire they are).
  for (const args of [['user', 'list'], ['user', 'show', '--email', 'ann@example.com'], ['sessions', 'list'], ['stats'], ['audit']]) await run(args, 0);
  t.equal((await auditJson(e)).filter((r) => !r.action.startsWith('alert.')).length, rows.length, 'reads added no row');

  const text = (await run(['audit'], 0)).stdout;
  for (const secret of [PASSWORD, NEW_PASSWORD]) {
    t.notOk(outputs.join('\n').includes(secret), 'no output shows a password');
    t.notOk(JSON.stringify(rows).includes(secret) || text.includes(secret), 'no audit row holds a password');
    t.notOk(databaseBytes(dataDir).includes(secret), 'nor does any byte of the database');
  }
});

t.test('a login through a running server shows in hellwall audit, with no secret', async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-audit-'));
  const e = env(dataDir, { HELLWALL_PORT: '0' });
  t.equal((await runCli(['user', 'add', '--email', 'ops@example.com', '--phone', PHONE], { ...e, HELLWALL_PASSWORD: PASSWORD })).code, 0);
  const server = await startServer(e);
  t.teardown(() => server.child.kill('SIGKILL'));
  const client = await HellwallClient.connect({ host: '127.0.0.1', port: server.port, ca: readFileSync(path.join(dataDir, 'dev-cert.pem')) });
  t.teardown(() => client.destroy());

  t.match(await client.requestPasscode({ email: 'ops@example.com', password: 'not the password at all', mac: MAC }), { status: 'ok' });
  t.match(await client.requestPasscode({ email: 'ops@example.com', password: PASSWORD, mac: MAC }), { status: 'ok' });
  const outbox = path.join(dataDir, 'outbox');
  let passcode: string | undefined;
  for (let i = 0; i < 100 && !passcode; i++) {
    const files = existsSync(outbox) ? readdirSync(outbox).filter((f) => f.endsWith('.eml')) : [];
    passcode = files.map((f) => /passcode is: ([A-Z0-9]{6})/.exec(readFileSync(path.join(outbox, f), 'utf8'))?.[1]).find(Boolean);
    if (!passcode) await new Promise((r) => setTimeout(r, 50));
  }
  if (!passcode) throw new Error('no passcode mail');
  const wrong = passcode === 'AAAAAA' ? 'BBBBBB' : 'AAAAAA';
  t.match(await client.login({ email: 'ops@example.com', phone: PHONE, password: PASSWORD, passcode: wrong, mac: MAC }), { status: 'error' });
  const res = await client.login({ email: 'ops@example.com', phone: PHONE, password: PASSWORD, passcode, mac: MAC });
  if (res.status !== 'ok') throw new Error(`login: ${JSON.stringify(res)}`);

  // Refusals are group-committed on the server's next tick, and the mail is sent after the answer:
  // poll briefly until every row is there.
  let rows: AuditRow[] = [];
  for (let i = 0; i < 50; i++) {
    rows = await auditJson(e, '--email', 'ops@example.com');
    if (rows.length >= 5) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const byKind = (action: string, outcome: string) => rows.filter((r) => r.action === action && r.outcome === outcome);
  t.match(byKind('passcode.request', 'failure'), [{ userId: 1, ip: '127.0.0.1', mac: MAC, actor: null, detail: { reason: 'bad-password' } }]);
  t.match(byKind('passcode.request', 'success'), [{ userId: 1, email: 'ops@example.com', ip: '127.0.0.1', mac: MAC }]);
  t.match(byKind('passcode.sent', 'success'), [{ email: 'ops@example.com' }]);
  t.match(byKind('login', 'failure'), [{ ip: '127.0.0.1', mac: MAC, detail: { reason: /passcode/ } }]);
  t.match(byKind('login', 'success'), [{ userId: 1, email: 'ops@example.com', ip: '127.0.0.1', mac: MAC, sessionId: 1, actor: null }]);
  t.same((await auditJson(e, '--action', 'login', '--outcome', 'success')).map((r) => r.sessionId), [1], 'filtered by the CLI while the server runs');
  const text = (await runCli(['audit', '--email', 'ops@example.com'], e)).stdout;
  t.match(text, /\slogin\s+success\s+ops@example\.com\s+-\s+127\.0\.0\.1\s+00:1a:2b:3c:4d:5e\s+1\s/);
  t.match(text, /\spasscode\.request\s+success\s+ops@example\.com\s/);

  const everything = JSON.stringify(await auditJson(e, '--limit', '1000')) + text;
  for (const [what, secret] of [['password', PASSWORD], ['wrong password', 'not the password at all'], ['passcode', passcode], ['token', res.token]] as const) {
    t.notOk(everything.includes(secret), `no ${what} in the audit trail`);
  }
  server.child.kill('SIGTERM');
  t.equal(await server.exited, 0);
  t.notOk(databaseBytes(dataDir).includes(PASSWORD), 'nor anywhere in the database');
});
