import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { HellwallClient } from '../../src/client/client.js';
import { env, startServer } from '../helpers/processes.js';
import { runCli } from '../helpers/cli.js';

const PASSWORD = 'correct horse battery staple';
const MAC = '00:1a:2b:3c:4d:5e';
const EMAIL = 'ops@example.com';
const PHONE = '+1 555 0100';

/** The newest passcode in the dev outbox after `seen` messages. */
async function passcodeFromOutbox(dataDir: string, seen: number): Promise<string> {
  const outbox = path.join(dataDir, 'outbox');
  for (let i = 0; i < 100; i++) {
    const files = existsSync(outbox) ? readdirSync(outbox).filter((f) => f.endsWith('.eml')).sort() : [];
    if (files.length > seen) {
      const newest = files.map((f) => path.join(outbox, f)).sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs).at(-1)!;
      const code = /passcode is: ([A-Z0-9]{6})/.exec(readFileSync(newest, 'utf8'))?.[1];
      if (code) return code;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('no passcode in the outbox');
}

t.test('key rotate + SIGHUP on a running server: the old session still checks, new ones use the new key, retire ends the old', async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-keys-'));
  const e = env(dataDir, { HELLWALL_PORT: '0' });
  t.equal((await runCli(['user', 'add', '--email', EMAIL, '--phone', PHONE], { ...e, HELLWALL_PASSWORD: PASSWORD })).code, 0);
  const server = await startServer(e);
  t.teardown(() => server.child.kill('SIGKILL'));
  const client = await HellwallClient.connect({ host: '127.0.0.1', port: server.port, ca: readFileSync(path.join(dataDir, 'dev-cert.pem')), connectTimeoutMs: 5000 });
  t.teardown(() => client.destroy());
  let mails = 0;
  const login = async (): Promise<string> => {
    t.equal((await client.requestPasscode({ email: EMAIL, password: PASSWORD, mac: MAC })).status, 'ok');
    const passcode = await passcodeFromOutbox(dataDir, mails++);
    const res = await client.login({ email: EMAIL, phone: PHONE, password: PASSWORD, passcode, mac: MAC });
    if (res.status !== 'ok') throw new Error(`login failed: ${JSON.stringify(res)}`);
    return res.token;
  };
  const check = async (token: string) => (await client.check({ token, mac: MAC, request: 'r' })).status;
  const list = async () => {
    const r = await runCli(['key', 'list', '--json'], e);
    t.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as Array<{ id: number; status: string; sessions: number }>).map((k) => [k.id, k.status, k.sessions]);
  };

  const oldToken = await login();
  t.same(await list(), [[1, 'current', 1]]);

  const rotated = await runCli(['key', 'rotate'], e);
  t.equal(rotated.code, 0, rotated.stderr);
  t.equal(rotated.stdout, '2\n', 'prints the new key id');
  t.match(rotated.stderr, /SIGHUP/);
  t.equal(statSync(path.join(dataDir, 'server.key.2')).mode & 0o777, 0o600, 'the new key file is 0600');
  t.equal(await check(oldToken), 'authorized', 'before the reload nothing changes for the server');

  server.child.kill('SIGHUP');
  const reloaded = await server.waitForLog('server keys reloaded');
  t.same(reloaded.keyIds, [2, 1]);
  t.equal(await check(oldToken), 'authorized', 'after the reload the old key still verifies');
  const newToken = await login();
  t.same(await list(), [[1, 'verifying', 1], [2, 'current', 1]], 'the new login is under key 2');

  const refused = await runCli(['key', 'retire', '2'], e);
  t.equal(refused.code, 1, 'the current key cannot be retired');
  t.match(refused.stderr, /current key/);
  t.equal((await runCli(['key', 'retire', 'x'], e)).code, 2, 'a bad id is a usage error');

  const retired = await runCli(['key', 'retire', '1'], e);
  t.equal(retired.code, 0, retired.stderr);
  t.match(retired.stdout, /key 1 retired: 1 session\(s\) revoked/);
  t.equal(await check(oldToken), 'unauthorized', 'revoked in the database: the running server sees it at once');
  t.equal(await check(newToken), 'authorized');
  server.child.kill('SIGHUP');
  for (let i = 0; i < 100 && server.lines.filter((l) => l.msg === 'server keys reloaded').length < 2; i++) await new Promise((r) => setTimeout(r, 50));
  t.same(server.lines.filter((l) => l.msg === 'server keys reloaded').at(-1)?.keyIds, [2], 'key 1 is gone from the server');
  t.equal(await check(newToken), 'authorized', 'and after the next reload');
  t.equal(await check(oldToken), 'unauthorized');
  t.same(await list(), [[1, 'retired', 0], [2, 'current', 1]]);
  t.notOk(existsSync(path.join(dataDir, 'server.key')), 'the retired key material is deleted');

  const human = await runCli(['key', 'list'], e);
  t.match(human.stdout, /^id\s+status/);
  const logText = server.lines.map((l) => JSON.stringify(l)).join('\n');
  t.notOk(logText.includes(readFileSync(path.join(dataDir, 'server.key.2'), 'utf8').trim()), 'no key material in the log');

  // Rotations and retirements are audited as the CLI's, the refused one too; a usage error is not.
  const audit = JSON.parse((await runCli(['audit', '--action', 'admin.key.*', '--json'], e)).stdout) as Array<Record<string, unknown>>;
  t.same(
    audit.reverse().map((r) => [r.action, r.outcome, r.actor, r.detail]),
    [
      ['admin.key.rotate', 'success', `cli:${os.userInfo().username}`, { keyId: 2 }],
      ['admin.key.retire', 'failure', `cli:${os.userInfo().username}`, { keyId: 2, reason: 'key-current', message: 'key 2 is the current key; rotate first, then retire it' }],
      ['admin.key.retire', 'success', `cli:${os.userInfo().username}`, { keyId: 1, sessionsEnded: 1, passcodesDropped: 0, secretsResealed: 0, alreadyRetired: false }],
    ],
  );
  t.notOk(JSON.stringify(audit).includes(readFileSync(path.join(dataDir, 'server.key.2'), 'utf8').trim()), 'no key material in the audit trail');

  server.child.kill('SIGTERM');
  t.equal(await server.exited, 0);
});
