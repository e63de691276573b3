import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { HellwallClient } from '../../src/client/client.js';
import { env, startServer } from '../helpers/processes.js';
import { runCli } from '../helpers/cli.js';

// `hellwall sessions …` and `hellwall stats` against the database of a running server; revocations
// are audited.

const PASSWORD = 'correct horse battery staple';
const EMAIL = 'ann@example.com';

async function login(client: HellwallClient, dataDir: string, mac: string, device?: string): Promise<string> {
  const outbox = path.join(dataDir, 'outbox');
  const list = (): string[] => {
    try {
      return readdirSync(outbox).filter((f) => f.endsWith('.eml'));
    } catch {
      return [];
    }
  };
  const before = new Set(list());
  const req = await client.requestPasscode({ email: EMAIL, password: PASSWORD, mac });
  if (req.status !== 'ok') throw new Error(`passcode request: ${JSON.stringify(req)}`);
  for (let i = 0; i < 100; i++) {
    for (const f of list().filter((f) => !before.has(f))) {
      const passcode = /passcode is: ([A-Z0-9]{6})/.exec(readFileSync(path.join(outbox, f), 'utf8'))?.[1];
      const res = await client.login({ email: EMAIL, phone: '+1 555 0100', password: PASSWORD, passcode: passcode!, mac, ...(device && { device }) });
      if (res.status !== 'ok') throw new Error(`login: ${JSON.stringify(res)}`);
      return res.token;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no passcode mail');
}

t.test('sessions list, sessions revoke and stats work on a running server\'s database', async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-sessions-'));
  const e = env(dataDir, { HELLWALL_PORT: '0' });
  t.equal((await runCli(['user', 'add', '--email', EMAIL, '--phone', '+1 555 0100'], { ...e, HELLWALL_PASSWORD: PASSWORD })).code, 0);
  const server = await startServer(e);
  t.teardown(() => server.child.kill('SIGKILL'));
  const client = await HellwallClient.connect({ host: '127.0.0.1', port: server.port, ca: readFileSync(path.join(dataDir, 'dev-cert.pem')) });
  t.teardown(() => client.destroy());
  const macA = '00:1a:2b:3c:4d:01';
  const macB = '00:1a:2b:3c:4d:02';
  // A registered device whose name carries a bidi override: shown escaped, never raw.
  t.equal((await runCli(['user', 'device', 'add', '--email', EMAIL, '--mac', macA, '--name', 'ann desk\u202e'], e)).code, 0);
  const a = await login(client, dataDir, macA, 'ann laptop');
  const b = await login(client, dataDir, macB);

  const listed = JSON.parse((await runCli(['sessions', 'list', '--json'], e)).stdout) as Array<Record<string, unknown>>;
  t.match(listed, [
    { id: 1, email: EMAIL, mac: macA, ip: '127.0.0.1', device: 'ann laptop', deviceName: 'ann desk\u202e', deviceRegistered: true },
    { id: 2, email: EMAIL, mac: macB, device: null },
  ]);
  t.notOk(JSON.stringify(listed).includes('Awfer_hellwall_'), 'no token is shown');
  const text = await runCli(['sessions', 'list', '--email', EMAIL], e);
  t.equal(text.code, 0);
  t.match(text.stdout, /^id\s+email\s+mac\s+ip\s+device\s+device name\s+registered\s+created\s+last seen\s+expires\n1\s+ann@example\.com\s+00:1a:2b:3c:4d:01\s+127\.0\.0\.1\s+ann laptop\s+ann desk\\u202e\s+yes\s/);
  t.notOk(text.stdout.includes('\u202e'), 'the bidi override is escaped (printable), as in every table');
  t.notOk((await runCli(['sessions', 'list', '--json'], e)).stdout.includes('\u202e'), 'and in --json');

  t.same(JSON.parse((await runCli(['stats', '--json'], e)).stdout), { activeSessions: 2, activeUsers: 1, expiredSessions: 0, pendingPasscodes: 0, sessionsPerUser: { [EMAIL]: 2 } });
  t.match((await runCli(['stats'], e)).stdout, /active sessions\s+2\nactive users\s+1\n/);

  const revoked = await runCli(['sessions', 'revoke', '--id', '1'], e);
  t.equal(revoked.code, 0);
  t.match(revoked.stdout, /session 1 of ann@example\.com ended/);
  t.match(await client.check({ token: a, mac: macA, request: 'x' }), { status: 'unauthorized' }, 'the running server sees the revocation');
  t.match(await client.check({ token: b, mac: macB, request: 'x' }), { status: 'authorized' });
  t.equal((await runCli(['sessions', 'revoke', '--id', '99'], e)).code, 1, 'an unknown id is an error');
  const again = await runCli(['sessions', 'revoke', '--id', '1'], e);
  t.equal(again.code, 1, 'so is a session that has already ended');
  t.match(again.stderr, /session 1 had already ended \(admin-revoked\)/);
  t.equal((await runCli(['sessions', 'revoke'], e)).code, 2, 'revoke needs --id or --email');

  t.match((await runCli(['sessions', 'revoke', '--email', EMAIL], e)).stdout, /1 session\(s\) of ann@example\.com ended/);
  t.match(await client.check({ token: b, mac: macB, request: 'x' }), { status: 'unauthorized' });
  t.same(JSON.parse((await runCli(['sessions', 'list', '--json'], e)).stdout), []);
  t.match(JSON.parse((await runCli(['stats', '--json'], e)).stdout), { activeSessions: 0, activeUsers: 0 });

  const audit = async (action: string) =>
    (JSON.parse((await runCli(['audit', '--action', action, '--json'], e)).stdout) as Array<Record<string, unknown>>).reverse();
  t.match(await audit('admin.session.*'), [
    { action: 'admin.session.revoke', outcome: 'success', email: EMAIL, actor: `cli:${os.userInfo().username}`, detail: { target: 1, targetMac: macA, targetIp: '127.0.0.1' } },
    { action: 'admin.session.revoke', outcome: 'failure', email: null, detail: { target: 99, reason: 'not-found' } },
    { action: 'admin.session.revoke', outcome: 'failure', detail: { target: 1, reason: 'conflict' } },
    { action: 'admin.session.revoke_user', outcome: 'success', email: EMAIL, detail: { ended: 1 } },
  ]);
  t.equal((await audit('admin.session.*')).length, 4);
  t.match(await audit('login'), [
    { outcome: 'success', email: EMAIL, mac: macA, ip: '127.0.0.1', sessionId: 1, actor: null },
    { outcome: 'success', email: EMAIL, mac: macB, sessionId: 2 },
  ], 'the logins are there too');
});
