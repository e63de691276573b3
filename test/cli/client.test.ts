import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { readTokenFile } from '../../src/client/token-file.js';
import { runCli } from '../helpers/cli.js';
import { ALICE, MAC, startHarness, type Harness } from '../helpers/harness.js';
import { passcodeFrom } from '../helpers/smtp-sink.js';

// `hellwall client …` in-process against a real server (the harness: TLS, SQLite, SMTP sink): the
// stored token, its renewal, the session commands and exit codes.

const HOUR = 3_600_000;
const OTHER_MAC = '00:1a:2b:3c:4d:5f';

/** The client's environment: the harness's data directory (dev certificate) and port, a token file of its own. */
function clientEnv(h: Harness, more: Record<string, string> = {}): NodeJS.ProcessEnv {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-client-'));
  return {
    HOME: dir,
    HELLWALL_DATA_DIR: h.dataDir,
    HELLWALL_PORT: String(h.port),
    HELLWALL_TOKEN_FILE: path.join(dir, 'token'),
    HELLWALL_PASSWORD: ALICE.password,
    ...more,
  };
}

/** `client passcode`, the mail, `client login --passcode`: the README's steps. */
async function login(t: Test, h: Harness, env: NodeJS.ProcessEnv, user = ALICE, mac = MAC): Promise<{ token: string; stdout: string }> {
  const since = h.smtp.messages.length;
  const req = await runCli(['client', 'passcode', '--email', user.email, '--mac', mac], { ...env, HELLWALL_PASSWORD: user.password });
  t.equal(req.code, 0, req.stderr);
  const passcode = passcodeFrom(await h.smtp.waitFor(user.email, since));
  const res = await runCli(['client', 'login', '--email', user.email, '--phone', user.phone, '--mac', mac, '--passcode', passcode], { ...env, HELLWALL_PASSWORD: user.password });
  t.equal(res.code, 0, res.stderr);
  return { token: (JSON.parse(res.stdout) as { token: string }).token, stdout: res.stdout };
}

t.test('login stores the token 0600; check uses it; HELLWALL_TOKEN and --token win over it', async (t) => {
  const h = await startHarness(t);
  h.clock.now = Date.now();
  const env = clientEnv(h);
  const hello = await runCli(['client', 'hello'], env);
  t.equal(hello.code, 0, hello.stderr);
  t.match(JSON.parse(hello.stdout), { status: 'ok', protocol: 'hellwall' }, 'no --port or --ca: the server\'s own configuration and dev certificate');

  const { token } = await login(t, h, env);
  const file = env.HELLWALL_TOKEN_FILE!;
  t.equal(statSync(file).mode & 0o777, 0o600, 'the token file is 0600');
  t.match(readTokenFile(file)?.stored, { token, mac: MAC, email: ALICE.email, role: 'user' });

  const check = await runCli(['client', 'check', '--request', 'inventory.read'], env);
  t.equal(check.code, 0, check.stderr);
  t.equal(JSON.parse(check.stdout).status, 'authorized', 'no --token, no --mac: the stored ones');

  // A second session, on another MAC, to tell the sources apart.
  const other = await h.login(await h.connect(), ALICE, OTHER_MAC);
  const viaEnv = await runCli(['client', 'check', '--mac', OTHER_MAC], { ...env, HELLWALL_TOKEN: other.token });
  t.equal(JSON.parse(viaEnv.stdout).status, 'authorized', 'HELLWALL_TOKEN wins over the file');
  const wrongMac = await runCli(['client', 'check', '--mac', MAC], { ...env, HELLWALL_TOKEN: other.token });
  t.equal(wrongMac.code, 1, 'it is really that token that was sent: bound to the other MAC');
  t.equal(JSON.parse(wrongMac.stdout).status, 'unauthorized');
  const viaOption = await runCli(['client', 'check', '--token', token, '--mac', MAC], { ...env, HELLWALL_TOKEN: other.token });
  t.equal(JSON.parse(viaOption.stdout).status, 'authorized', '--token wins over HELLWALL_TOKEN');
  const badData = await runCli(['client', 'check', '--data', '{oops'], env);
  t.equal(badData.code, 2);
  t.match(badData.stderr, /--data must be JSON/);
  t.equal(readTokenFile(file)?.stored.token, token, 'the file is untouched by checks that did not renew');
});

t.test('a renewal through the stored file replaces it before printing, and the next check succeeds', async (t) => {
  const h = await startHarness(t);
  h.clock.now = Date.now();
  const env = clientEnv(h);
  const { token } = await login(t, h, env);
  const file = env.HELLWALL_TOKEN_FILE!;
  h.clock.advance(HOUR + 1000);
  const renewed = await runCli(['client', 'check', '--request', 'inventory.read'], env);
  t.equal(renewed.code, 0, renewed.stderr);
  const answer = JSON.parse(renewed.stdout) as { status: string; token: string };
  t.equal(answer.status, 'renew');
  t.not(answer.token, token);
  t.equal(readTokenFile(file)?.stored.token, answer.token, 'the file holds the new token');
  t.equal(statSync(file).mode & 0o777, 0o600, 'still 0600 after the replacement');
  t.same(readFileSync(file, 'utf8').includes(token), false, 'the old token is gone from it');
  // Past the rotation grace the old token would revoke the session: only the new one may be used.
  h.clock.advance(60_000);
  const next = await runCli(['client', 'check', '--request', 'inventory.read'], env);
  t.equal(next.code, 0, next.stderr);
  t.equal(JSON.parse(next.stdout).status, 'authorized', 'the next check with the file succeeds');

  // Any authenticated command renews a stored token it finds expired, then goes on.
  h.clock.advance(HOUR + 1000);
  const sessions = await runCli(['client', 'sessions', '--json'], env);
  t.equal(sessions.code, 0, sessions.stderr);
  t.match(JSON.parse(sessions.stdout), [{ current: true, mac: MAC }]);
  t.not(readTokenFile(file)?.stored.token, answer.token, 'renewed again, and stored');
  const after = await runCli(['client', 'check', '--request', 'inventory.read'], env);
  t.equal(JSON.parse(after.stdout).status, 'authorized');
});

t.test('a renewal of a HELLWALL_TOKEN is printed and said, and the file is left alone', async (t) => {
  const h = await startHarness(t);
  h.clock.now = Date.now();
  const env = clientEnv(h);
  const other = await h.login(await h.connect(), ALICE, OTHER_MAC);
  h.clock.advance(HOUR + 1000);
  const res = await runCli(['client', 'check', '--mac', OTHER_MAC], { ...env, HELLWALL_TOKEN: other.token });
  t.equal(res.code, 0);
  t.equal(JSON.parse(res.stdout).status, 'renew');
  t.match(res.stderr, /the token was renewed: use the new one/);
  t.equal(readTokenFile(env.HELLWALL_TOKEN_FILE!), null, 'no token file was made');
  const sessions = await runCli(['client', 'sessions', '--mac', OTHER_MAC], { ...env, HELLWALL_TOKEN: JSON.parse(res.stdout).token });
  t.equal(sessions.code, 0, sessions.stderr);
});

t.test('sessions, revoke, logout and logout --all', async (t) => {
  const h = await startHarness(t);
  h.clock.now = Date.now();
  const env = clientEnv(h);
  await login(t, h, env);
  const other = await h.login(await h.connect(), ALICE, OTHER_MAC);
  const list = await runCli(['client', 'sessions'], env);
  t.equal(list.code, 0, list.stderr);
  t.match(list.stdout, new RegExp(`^\\s+id\\s+mac\\s+ip\\s+device\\s+created\\s+last seen\\n\\*\\s+\\d+\\s+${MAC}`, 'm'), 'a table, the current session marked *');
  const sessions = JSON.parse((await runCli(['client', 'sessions', '--json'], env)).stdout) as Array<{ id: number; mac: string; current: boolean }>;
  const otherId = sessions.find((s) => s.mac === OTHER_MAC)!.id;
  const revoke = await runCli(['client', 'revoke', String(otherId)], env);
  t.equal(revoke.code, 0, revoke.stderr);
  t.match(revoke.stdout, `session ${otherId} ended`);
  const client = await h.connect();
  t.match(await client.check({ token: other.token, mac: OTHER_MAC, request: 'x' }), { status: 'unauthorized' });
  const again = await runCli(['client', 'revoke', String(otherId)], env);
  t.equal(again.code, 1, 'refused by the server: exit 1');
  t.match(again.stderr, /^hellwall: the server refused: .*\(E_NOT_FOUND\)\n$/);
  const bad = await runCli(['client', 'revoke', 'x'], env);
  t.equal(bad.code, 2);

  const file = env.HELLWALL_TOKEN_FILE!;
  const stored = readTokenFile(file)!.stored;
  const out = await runCli(['client', 'logout'], env);
  t.equal(out.code, 0, out.stderr);
  t.match(out.stdout, /logged out/);
  t.equal(readTokenFile(file), null, 'logout removes the token file');
  t.match(await client.check({ token: stored.token, mac: MAC, request: 'x' }), { status: 'unauthorized' });
  const notIn = await runCli(['client', 'check'], env);
  t.equal(notIn.code, 2, 'no token anywhere: a usage error');
  t.match(notIn.stderr, /not logged in \(no token in .*\): run `hellwall client login`/);

  await login(t, h, env);
  const third = await h.login(client, ALICE, OTHER_MAC);
  const all = await runCli(['client', 'logout', '--all'], env);
  t.equal(all.code, 0, all.stderr);
  t.match(all.stdout, /logged out: 2 session\(s\) ended/);
  t.match(await client.check({ token: third.token, mac: OTHER_MAC, request: 'x' }), { status: 'unauthorized' });
  t.equal(readTokenFile(file), null);
});

t.test('password changes the password and ends the other sessions', async (t) => {
  const h = await startHarness(t);
  h.clock.now = Date.now();
  const env = clientEnv(h);
  await login(t, h, env);
  await h.login(await h.connect(), ALICE, OTHER_MAC);
  const res = await runCli(['client', 'password'], { ...env, HELLWALL_NEW_PASSWORD: 'a new passphrase for alice' });
  t.equal(res.code, 0, res.stderr);
  t.match(res.stdout, /password changed; 1 other session\(s\) ended/);
  const wrong = await runCli(['client', 'password'], { ...env, HELLWALL_PASSWORD: 'not the password at all', HELLWALL_NEW_PASSWORD: 'whatever passphrase 2' });
  t.equal(wrong.code, 1);
  t.match(wrong.stderr, /E_AUTH_FAILED/);
});

t.test('send: any command by name, the stored token added where its schema needs one', async (t) => {
  const h = await startHarness(t);
  h.clock.now = Date.now();
  const env = clientEnv(h);
  await login(t, h, env);
  const list = await runCli(['client', 'send', 'session.list'], env);
  t.equal(list.code, 0, list.stderr);
  t.match(JSON.parse(list.stdout), { status: 'ok', sessions: [{ current: true }] });
  const hello = await runCli(['client', 'send', 'hello'], env);
  t.match(JSON.parse(hello.stdout), { status: 'ok' });
  const unknown = await runCli(['client', 'send', 'no.such'], env);
  t.equal(unknown.code, 2);
  const refused = await runCli(['client', 'send', 'admin.user.list'], env);
  t.equal(refused.code, 1, 'an error answer is exit 1');
  t.match(JSON.parse(refused.stdout), { status: 'error', error: 'E_FORBIDDEN' });
});

t.test('login without --passcode asks for it on a terminal, and refuses to guess without one', async (t) => {
  const h = await startHarness(t);
  const env = clientEnv(h);
  const res = await runCli(['client', 'login', '--email', ALICE.email, '--phone', ALICE.phone, '--mac', MAC], env);
  t.equal(res.code, 2, 'no terminal to ask on');
  t.match(res.stderr, /--passcode is required/);
});

t.test('client recovery: request mails a recovery passcode; each flow takes only its own options', async (t) => {
  const h = await startHarness(t);
  h.clock.now = Date.now();
  const env = clientEnv(h);
  const since = h.smtp.messages.length;
  const req = await runCli(['client', 'recovery', 'request', '--email', ALICE.email, '--mac', MAC], env);
  t.equal(req.code, 0, req.stderr);
  t.match(req.stdout, /a recovery passcode is on its way to alice@example\.com .*works from 00:1a:2b:3c:4d:5e only/);
  t.match((await h.smtp.waitFor(ALICE.email, since)).raw, /Subject: Your Hellwall recovery passcode/);

  const usage = async (args: string[], message: RegExp, what: string) => {
    const r = await runCli(['client', 'recovery', ...args, '--email', ALICE.email, '--passcode', 'K7M2QX'], env);
    t.equal(r.code, 2, what);
    t.match(r.stderr, message, what);
  };
  await usage(['password'], /needs --totp or --recovery-code/, 'password without a second factor');
  await usage(['password', '--totp', '123456', '--recovery-code', 'AAAAA-BBBBB'], /needs --totp or --recovery-code \(one of them\)/, 'password with both');
  await usage(['totp', '--totp', '123456'], /client recovery totp has no option --totp/, 'an option of another flow');
  await usage(['device'], /--totp is required/, 'device without --totp');
  await usage(['lost'], /unknown recovery flow "lost"/, 'an unknown flow');
  // An account without an authenticator cannot recover by itself: the server refuses (exit 1).
  const refusedNoTotp = await runCli(['client', 'recovery', 'password', '--email', ALICE.email, '--mac', MAC, '--passcode', 'K7M2QX', '--recovery-code', 'AAAAA-BBBBB'], { ...env, HELLWALL_NEW_PASSWORD: 'a brand new passphrase for spring' });
  t.equal(refusedNoTotp.code, 1);
  t.match(refusedNoTotp.stderr, /E_AUTH_FAILED/);
});
