import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { HellwallClient } from '../../src/client/client.js';
import { env, startServer } from '../helpers/processes.js';
import { runCli } from '../helpers/cli.js';

// `hellwall user …` against the database of a running server (another process, as an operator runs
// it): every change is seen by the server's next token check, the sessions the issue says must end
// (disable, password change, delete) do end, and every change is in the audit trail.

const PASSWORD = 'correct horse battery staple';
const MAC = '00:1a:2b:3c:4d:5e';

async function login(client: HellwallClient, dataDir: string, email: string, password = PASSWORD): Promise<string> {
  const outbox = path.join(dataDir, 'outbox');
  const before = new Set(safeList(outbox));
  const req = await client.requestPasscode({ email, password, mac: MAC });
  if (req.status !== 'ok') throw new Error(`passcode request: ${JSON.stringify(req)}`);
  for (let i = 0; i < 100; i++) {
    for (const f of safeList(outbox).filter((f) => !before.has(f))) {
      const mail = readFileSync(path.join(outbox, f), 'utf8');
      if (!mail.includes(`To: ${email}`)) continue;
      const passcode = /passcode is: ([A-Z0-9]{6})/.exec(mail)?.[1];
      const res = await client.login({ email, phone: '+1 555 0100', password, passcode: passcode!, mac: MAC });
      if (res.status !== 'ok') throw new Error(`login: ${JSON.stringify(res)}`);
      return res.token;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no passcode mail for ${email}`);
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir).filter((f) => f.endsWith('.eml'));
  } catch {
    return [];
  }
}

t.test('user admin commands change what a running server answers', async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-users-'));
  const e = env(dataDir, { HELLWALL_PORT: '0' });
  const withPassword = (p: string) => ({ ...e, HELLWALL_PASSWORD: p });
  for (const email of ['ann@example.com', 'bob@example.com']) {
    t.equal((await runCli(['user', 'add', '--email', email, '--phone', '+1 555 0100'], withPassword(PASSWORD))).code, 0);
  }
  const server = await startServer(e);
  t.teardown(() => server.child.kill('SIGKILL'));
  const client = await HellwallClient.connect({ host: '127.0.0.1', port: server.port, ca: readFileSync(path.join(dataDir, 'dev-cert.pem')) });
  t.teardown(() => client.destroy());
  // One round trip before the CLI runs below block this process (spawnSync): the client's last
  // handshake message must reach the server within handshakeTimeoutMs, or it cuts the connection.
  await client.hello();
  const check = async (token: string) => client.check({ token, mac: MAC, request: 'inventory.read' });

  // list / show, for people and for scripts; never a password hash.
  const list = await runCli(['user', 'list'], e);
  t.equal(list.code, 0);
  t.match(list.stdout, /^id\s+email\s+phone\s+role\s+disabled\s+created\n1\s+ann@example\.com\s+\+15550100\s+user\s+no\s/);
  const listed = JSON.parse((await runCli(['user', 'list', '--json'], e)).stdout) as Array<Record<string, unknown>>;
  t.same(listed.map((u) => u.email), ['ann@example.com', 'bob@example.com']);
  t.notOk(JSON.stringify(listed).includes('scrypt'), 'no password hash is shown');
  t.match(JSON.parse((await runCli(['user', 'show', '--email', 'ANN@example.com', '--json'], e)).stdout), { id: 1, email: 'ann@example.com', role: 'user', disabled: false, activeSessions: 0 });
  t.match((await runCli(['user', 'show', '--email', 'ann@example.com'], e)).stdout, /^id {14}1\nemail {11}ann@example\.com\n(.*\n){4}activeSessions {2}0\n$/);
  const missing = await runCli(['user', 'show', '--email', 'nobody@example.com'], e);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /no user with email nobody@example\.com/);

  // set-role: the next check reports the new role.
  let ann = await login(client, dataDir, 'ann@example.com');
  t.match(await check(ann), { status: 'authorized', user: { role: 'user' } });
  t.equal((await runCli(['user', 'set-role', '--email', 'ann@example.com', '--role', 'admin'], e)).code, 0);
  t.match(await check(ann), { status: 'authorized', user: { role: 'admin' } }, 'the running server sees the new role at once');
  const badRole = await runCli(['user', 'set-role', '--email', 'ann@example.com', '--role', 'root'], e);
  t.equal(badRole.code, 1);
  t.match(badRole.stderr, /role must be one of user, admin/);

  // disable ends the sessions; enable does not bring them back.
  const disabled = await runCli(['user', 'disable', '--email', 'ann@example.com'], e);
  t.match(disabled.stdout, /disabled ann@example\.com; 1 session\(s\) ended/);
  t.match(await check(ann), { status: 'unauthorized' });
  t.match(await client.requestPasscode({ email: 'ann@example.com', password: PASSWORD, mac: MAC }), { status: 'ok' }, 'same answer as ever (no enumeration)');
  t.equal((await runCli(['user', 'enable', '--email', 'ann@example.com'], e)).code, 0);
  t.match(await check(ann), { status: 'unauthorized' }, 'ended sessions stay ended');
  ann = await login(client, dataDir, 'ann@example.com');
  t.match(await check(ann), { status: 'authorized' }, 'a new login works after enable');

  // reset-password: policy applies, every session ends, the old password no longer works.
  const weak = await runCli(['user', 'reset-password', '--email', 'ann@example.com'], withPassword('password1'));
  t.equal(weak.code, 1);
  t.match(weak.stderr, /commonly used passwords/);
  t.match(await check(ann), { status: 'authorized' }, 'a refused reset changes nothing');
  const reset = await runCli(['user', 'reset-password', '--email', 'ann@example.com'], withPassword('a brand new passphrase 42'));
  t.equal(reset.code, 0, reset.stderr);
  t.match(reset.stdout, /password of ann@example\.com changed; 1 session\(s\) ended/);
  t.match(await check(ann), { status: 'unauthorized' });
  await t.rejects(login(client, dataDir, 'ann@example.com', PASSWORD), 'the old password mails no passcode');
  ann = await login(client, dataDir, 'ann@example.com', 'a brand new passphrase 42');
  t.match(await check(ann), { status: 'authorized' });

  // delete needs --yes, then removes the user with every session.
  const bob = await login(client, dataDir, 'bob@example.com');
  const unconfirmed = await runCli(['user', 'delete', '--email', 'bob@example.com'], e);
  t.equal(unconfirmed.code, 2);
  t.match(unconfirmed.stderr, /add --yes to confirm/);
  t.match(await check(bob), { status: 'authorized' });
  t.match((await runCli(['user', 'delete', '--email', 'bob@example.com', '--yes'], e)).stdout, /deleted bob@example\.com/);
  t.match(await check(bob), { status: 'unauthorized' });
  t.same((JSON.parse((await runCli(['user', 'list', '--json'], e)).stdout) as Array<{ email: string }>).map((u) => u.email), ['ann@example.com']);

  // Every change above, refused ones included, is in the audit trail as the CLI's; its reads are not
  // (the failed show is: it was refused). No password anywhere in it.
  const audit = JSON.parse((await runCli(['audit', '--action', 'admin.*', '--json'], e)).stdout) as Array<{ action: string; outcome: string; email: string; actor: string; detail: Record<string, unknown> | null }>;
  t.same(audit.reverse().map((r) => [r.action, r.outcome, r.email]), [
    ['admin.user.add', 'success', 'ann@example.com'],
    ['admin.user.add', 'success', 'bob@example.com'],
    ['admin.user.show', 'failure', 'nobody@example.com'],
    ['admin.user.set_role', 'success', 'ann@example.com'],
    ['admin.user.set_role', 'failure', 'ann@example.com'],
    ['admin.user.disable', 'success', 'ann@example.com'],
    ['admin.user.enable', 'success', 'ann@example.com'],
    ['admin.user.reset_password', 'failure', 'ann@example.com'],
    ['admin.user.reset_password', 'success', 'ann@example.com'],
    ['admin.user.delete', 'success', 'bob@example.com'],
  ]);
  t.ok(audit.every((r) => r.actor === `cli:${os.userInfo().username}`), 'the actor is cli:<os user>');
  t.match(audit[5]!.detail, { sessionsEnded: 1 });
  t.match(audit[8]!.detail, { sessionsEnded: 1 });
  const trail = (await runCli(['audit', '--limit', '1000', '--json'], e)).stdout;
  for (const secret of [PASSWORD, 'password1', 'a brand new passphrase 42']) t.notOk(trail.includes(secret), 'no password in the audit trail');

  server.child.kill('SIGTERM');
  t.equal(await server.exited, 0);
});

t.test('roles are extensible: a role the policy declares can be given', async (t) => {
  const { writeFileSync } = await import('node:fs');
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-users-'));
  const policy = path.join(dataDir, 'policy.json');
  writeFileSync(policy, JSON.stringify({ roles: ['user', 'admin', 'auditor'], rules: [{ requests: ['audit.*'], roles: ['auditor', 'admin'] }] }));
  const e = env(dataDir, { HELLWALL_POLICY: policy });
  t.equal((await runCli(['user', 'add', '--email', 'cat@example.com', '--phone', '+1 555 0100', '--role', 'auditor'], { ...e, HELLWALL_PASSWORD: PASSWORD })).code, 0);
  t.match(JSON.parse((await runCli(['user', 'show', '--email', 'cat@example.com', '--json'], e)).stdout), { role: 'auditor' });
  t.equal((await runCli(['user', 'set-role', '--email', 'cat@example.com', '--role', 'user'], e)).code, 0);
  const unknown = await runCli(['user', 'set-role', '--email', 'cat@example.com', '--role', 'janitor'], e);
  t.equal(unknown.code, 1);
  t.match(unknown.stderr, /role must be one of user, admin, auditor/);
});
