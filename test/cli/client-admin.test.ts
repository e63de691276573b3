import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { runCli } from '../helpers/cli.js';
import { ALICE, startHarness, type Harness } from '../helpers/harness.js';
import { passcodeFrom } from '../helpers/smtp-sink.js';

// `hellwall client admin …`: the admin.* commands from another machine (kcadm.sh style), with the
// same output as the local commands on the server's data directory, table and --json alike.

const ROOT = { email: 'root@example.com', phone: '+1 555 0199', password: 'root passphrase for admin tests', role: 'admin' };
const MAC = '00:1a:2b:3c:4d:5e';

async function loggedIn(t: Test, h: Harness, user: typeof ALICE): Promise<NodeJS.ProcessEnv> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-radmin-'));
  const env = { HOME: dir, HELLWALL_DATA_DIR: h.dataDir, HELLWALL_PORT: String(h.port), HELLWALL_TOKEN_FILE: path.join(dir, 'token'), HELLWALL_PASSWORD: user.password };
  const since = h.smtp.messages.length;
  t.equal((await runCli(['client', 'passcode', '--email', user.email, '--mac', MAC], env)).code, 0);
  const passcode = passcodeFrom(await h.smtp.waitFor(user.email, since));
  const login = await runCli(['client', 'login', '--email', user.email, '--phone', user.phone, '--mac', MAC, '--passcode', passcode], env);
  t.equal(login.code, 0, login.stderr);
  return env;
}

t.test('remote admin prints what the local commands print', async (t) => {
  const h = await startHarness(t, { users: [ALICE, ROOT] });
  h.clock.now = Date.now();
  const env = await loggedIn(t, h, ROOT);
  const local = { HELLWALL_DATA_DIR: h.dataDir, HOME: env.HOME };
  // Sessions with their known devices: ROOT's on a registered, named device, ALICE's on one not.
  await h.app.services.devices.register({ name: 'cli:test', auditReads: false }, ROOT.email, MAC, 'root desk');
  await h.login(await h.connect(), ALICE);
  await h.app.mail.drain();
  for (const words of [['user', 'list'], ['user', 'list', '--json'], ['user', 'show', '--email', ALICE.email, '--json'], ['sessions', 'list'], ['sessions', 'list', '--json'], ['stats'], ['stats', '--json']]) {
    const remote = await runCli(['client', 'admin', ...words], env);
    t.equal(remote.code, 0, `${words.join(' ')}: ${remote.stderr}`);
    const here = await runCli(words, local);
    t.equal(remote.stdout, here.stdout, `client admin ${words.join(' ')} = ${words.join(' ')}`);
  }
  const shown = JSON.parse((await runCli(['client', 'admin', 'sessions', 'list', '--json'], env)).stdout) as Array<Record<string, unknown>>;
  t.match(shown.find((s) => s.email === ROOT.email), { mac: MAC, deviceName: 'root desk', deviceRegistered: true });
  t.match(shown.find((s) => s.email === ALICE.email), { mac: MAC, deviceRegistered: false });
  t.match((await runCli(['client', 'admin', 'sessions', 'list', '--email', ROOT.email], env)).stdout, /^id\s+email\s+mac\s+ip\s+device\s+device name\s+registered\s.*\n\d+\s+root@example\.com\s.*\sroot desk\s+yes\s/);
  await runCli(['client', 'admin', 'sessions', 'revoke', '--email', ALICE.email], env);

  const add = await runCli(['client', 'admin', 'user', 'add', '--email', 'new@example.com', '--phone', '+1 555 0142'], { ...env, HELLWALL_PASSWORD: 'a new operator passphrase' });
  t.equal(add.code, 0, add.stderr);
  t.match(add.stdout, /^added user new@example\.com \(id \d+\)$/m);
  t.equal((await runCli(['client', 'admin', 'user', 'set-role', '--email', 'new@example.com', '--role', 'admin'], env)).stdout, 'new@example.com is now admin\n');
  t.match((await runCli(['client', 'admin', 'user', 'disable', '--email', 'new@example.com'], env)).stdout, /disabled new@example\.com; 0 session\(s\) ended/);
  const again = await runCli(['client', 'admin', 'user', 'disable', '--email', 'new@example.com'], env);
  t.equal(again.code, 1, 'a refusal by the server');
  t.match(again.stderr, /^hellwall: the server refused: .*already disabled.* \(E_CONFLICT\)\n$/);
  t.match((await runCli(['client', 'admin', 'user', 'enable', '--email', 'new@example.com'], env)).stdout, /enabled new@example\.com/);
  t.match((await runCli(['client', 'admin', 'user', 'reset-password', '--email', 'new@example.com'], { ...env, HELLWALL_PASSWORD: 'another fine passphrase' })).stdout, /password of new@example\.com changed/);
  const noYes = await runCli(['client', 'admin', 'user', 'delete', '--email', 'new@example.com'], env);
  t.equal(noYes.code, 2);
  t.match((await runCli(['client', 'admin', 'user', 'delete', '--email', 'new@example.com', '--yes'], env)).stdout, /deleted new@example\.com/);
  t.notOk(await h.app.store.findUserByEmail('new@example.com'));

  const alice = await h.login(await h.connect(), ALICE);
  const sessions = JSON.parse((await runCli(['client', 'admin', 'sessions', 'list', '--email', ALICE.email, '--json'], env)).stdout) as Array<{ id: number }>;
  t.equal(sessions.length, 1);
  const revoke = await runCli(['client', 'admin', 'sessions', 'revoke', '--id', String(sessions[0]!.id)], env);
  t.equal(revoke.stdout, `session ${sessions[0]!.id} of ${ALICE.email} ended\n`);
  t.match(await (await h.connect()).check({ token: alice.token, mac: MAC, request: 'x' }), { status: 'unauthorized' });
  await h.login(await h.connect(), ALICE);
  t.equal((await runCli(['client', 'admin', 'sessions', 'revoke', '--email', ALICE.email], env)).stdout, `1 session(s) of ${ALICE.email} ended\n`);

  const audit = await runCli(['client', 'admin', 'audit', '--action', 'admin.*', '--limit', '3', '--json'], env);
  t.equal(audit.code, 0, audit.stderr);
  const rows = JSON.parse(audit.stdout) as Array<{ action: string; actor: string }>;
  t.equal(rows.length, 3);
  t.ok(rows.every((r) => r.action.startsWith('admin.') && r.actor === `admin:${ROOT.email}`), 'audited as the administrator, not cli:<os user>');
  const page = await runCli(['client', 'admin', 'audit', '--limit', '2'], env);
  t.match(page.stderr, /2 rows shown \(the limit\); older ones: --before-id \d+/);
  t.match(page.stdout, /^id\s+time\s+action\s+outcome/);
});

t.test('an operator without the admin role is refused, one line, exit 1; usage mistakes exit 2', async (t) => {
  const h = await startHarness(t, { users: [ALICE, ROOT] });
  h.clock.now = Date.now();
  const env = await loggedIn(t, h, ALICE);
  const r = await runCli(['client', 'admin', 'user', 'list'], env);
  t.equal(r.code, 1);
  t.match(r.stderr, /^hellwall: the server refused: .*\(E_FORBIDDEN\)\n$/);
  t.equal(r.stdout, '');
  const unknown = await runCli(['client', 'admin', 'user', 'frob'], env);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /unknown admin command "user frob"/);
  const wrongOption = await runCli(['client', 'admin', 'stats', '--email', 'x@example.com'], env);
  t.equal(wrongOption.code, 2);
  t.match(wrongOption.stderr, /client admin stats has no option --email/);
  const help = await runCli(['client', 'admin', '--help'], env);
  t.equal(help.code, 0);
  t.match(help.stdout, /client admin user list/);
});
