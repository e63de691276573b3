import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { HellwallClient } from '../../src/client/client.js';
import { metricsText, sample } from '../helpers/http.js';
import { env, MAIN, startServer } from '../helpers/processes.js';
import { runCli } from '../helpers/cli.js';

// The authorization policy against the real server process: SIGHUP applies a rewritten policy
// file; a malformed one is refused at start-up (exit 2) and, on reload, leaves the previous one.

const PASSWORD = 'correct horse battery staple';
const MAC = '00:1a:2b:3c:4d:5e';
const EMAIL = 'ops@example.com';
const PHONE = '+1 555 0100';

async function passcodeFromOutbox(dataDir: string): Promise<string> {
  const outbox = path.join(dataDir, 'outbox');
  for (let i = 0; i < 100; i++) {
    const files = existsSync(outbox) ? readdirSync(outbox).filter((f) => f.endsWith('.eml')) : [];
    const newest = files.map((f) => path.join(outbox, f)).sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs).at(-1);
    const code = newest && /passcode is: ([A-Z0-9]{6})/.exec(readFileSync(newest, 'utf8'))?.[1];
    if (code) return code;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('no passcode in the outbox');
}

t.test('SIGHUP applies a rewritten policy file; a malformed one is logged and the previous policy stays', async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-policy-'));
  const policyFile = path.join(dataDir, 'policy.json');
  const allow = { rules: [{ requests: ['inventory.*'], roles: ['user', 'admin'] }] };
  const deny = { rules: [{ requests: ['inventory.*'], roles: ['admin'] }] };
  writeFileSync(policyFile, JSON.stringify(allow));
  const e = env(dataDir, { HELLWALL_PORT: '0', HELLWALL_POLICY: policyFile });
  t.equal((await runCli(['user', 'add', '--email', EMAIL, '--phone', PHONE], { ...e, HELLWALL_PASSWORD: PASSWORD })).code, 0);
  const server = await startServer(e);
  t.teardown(() => server.child.kill('SIGKILL'));
  t.match(await server.waitForLog('authorization policy loaded'), { policy: policyFile, rules: 1 });
  const client = await HellwallClient.connect({ host: '127.0.0.1', port: server.port, ca: readFileSync(path.join(dataDir, 'dev-cert.pem')), connectTimeoutMs: 5000 });
  t.teardown(() => client.destroy());
  t.equal((await client.requestPasscode({ email: EMAIL, password: PASSWORD, mac: MAC })).status, 'ok');
  const login = await client.login({ email: EMAIL, phone: PHONE, password: PASSWORD, passcode: await passcodeFromOutbox(dataDir), mac: MAC });
  if (login.status !== 'ok') throw new Error(`login failed: ${JSON.stringify(login)}`);
  const check = async () => (await client.check({ token: login.token, mac: MAC, request: 'inventory.read' })).status;
  t.equal(await check(), 'authorized');

  writeFileSync(policyFile, JSON.stringify(deny));
  server.child.kill('SIGHUP');
  await server.waitForLog('policy reloaded');
  t.equal(await check(), 'unauthorized', 'the rewritten policy applies without a restart');
  // The log line may reach us after the answer does: wait for it.
  t.match(await server.waitForLog('token check denied by policy'), { event: 'token.check', outcome: 'denied', reason: 'policy', role: 'user', request: 'inventory.read' });

  writeFileSync(policyFile, JSON.stringify(allow));
  server.child.kill('SIGHUP');
  // waitForLog finds the first such line, already seen: wait for the second one.
  for (let i = 0; i < 100 && server.lines.filter((l) => l.msg === 'policy reloaded').length < 2; i++) await new Promise((r) => setTimeout(r, 50));
  t.equal(await check(), 'authorized');

  writeFileSync(policyFile, '{"rules": [{"requests": ["inventory.*"], "roles": ["admin"]}');
  server.child.kill('SIGHUP');
  const failed = await server.waitForLog('policy reload failed; the previous policy stays in force');
  t.match(failed, { err: new RegExp(`^invalid policy file ${policyFile}: not JSON`) });
  t.equal(await check(), 'authorized', 'the previous policy still applies');

  const text = await metricsText(server.opsPort);
  t.equal(sample(text, 'hellwall_reloads_total{what="policy",outcome="ok"}'), 2);
  t.equal(sample(text, 'hellwall_reloads_total{what="policy",outcome="failed"}'), 1);
  client.destroy();
  server.child.kill('SIGTERM');
  t.equal(await server.exited, 0);
});

t.test('a malformed policy file stops start-up with exit 2 and one line naming the file and the problem', async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-policy-'));
  const policyFile = path.join(dataDir, 'policy.json');
  writeFileSync(policyFile, JSON.stringify({ rules: [{ requests: ['inventory.*'], roles: ['Admin'] }] }));
  const r = spawnSync(process.execPath, [MAIN], { env: env(dataDir, { HELLWALL_PORT: '0', HELLWALL_POLICY: policyFile }), encoding: 'utf8', timeout: 30_000 });
  t.equal(r.status, 2);
  t.equal(r.stderr, `hellwall: invalid policy file ${policyFile}: /rules/0/roles/0 must match pattern "^[a-z][a-z0-9_-]{0,31}$"\n`);
  t.notOk(existsSync(path.join(dataDir, 'hellwall.db')), 'nothing was opened');
});
