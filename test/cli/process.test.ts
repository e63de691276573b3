import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { runCli } from '../helpers/cli.js';
import { CLI, env, MAIN, startServer } from '../helpers/processes.js';

const PASSWORD = 'correct horse battery staple';
const MAC = '00:1a:2b:3c:4d:5e';

t.test('a newcomer: user add, npm start, passcode from the outbox, login, check, SIGTERM', async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-proc-'));
  const e = env(dataDir, { HELLWALL_PORT: '0' });

  const add = await runCli(['user', 'add', '--email', 'ops@example.com', '--phone', '+1 555 0100', '--role', 'admin'], { ...e, HELLWALL_PASSWORD: PASSWORD });
  t.equal(add.code, 0, add.stderr);
  t.match(add.stdout, /added admin ops@example\.com/);
  const dup = await runCli(['user', 'add', '--email', 'OPS@example.com', '--phone', '+1 555 0100'], { ...e, HELLWALL_PASSWORD: PASSWORD });
  t.equal(dup.code, 1, 'a duplicate user is refused');
  t.match(dup.stderr, /already exists/);
  const weak = await runCli(['user', 'add', '--email', 'new@example.com', '--phone', '+1 555 0101'], { ...e, HELLWALL_PASSWORD: 'short' });
  t.equal(weak.code, 1);
  t.match(weak.stderr, /at least 8 characters/);

  const { child, port, lines, exited } = await startServer(e);
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  t.ok(lines.some((l) => String(l.msg).startsWith('USING A SELF-SIGNED DEVELOPMENT CERTIFICATE')), 'the dev certificate is announced loudly');
  t.ok(lines.some((l) => String(l.msg).startsWith('no SMTP server configured')), 'the outbox mailer is announced');
  t.equal(statSync(path.join(dataDir, 'server.key')).mode & 0o777, 0o600, 'server key is 0600');
  t.equal(statSync(path.join(dataDir, 'dev-key.pem')).mode & 0o777, 0o600, 'dev private key is 0600');

  const ce = { ...e, HELLWALL_PORT: String(port), HELLWALL_PASSWORD: PASSWORD };
  const hello = await runCli(['client', 'hello'], ce);
  t.equal(hello.code, 0, hello.stderr);
  t.match(JSON.parse(hello.stdout), { status: 'ok', protocol: 'hellwall' });

  const req = await runCli(['client', 'passcode', '--email', 'ops@example.com', '--mac', MAC], ce);
  t.equal(req.code, 0, req.stderr);
  const outbox = path.join(dataDir, 'outbox');
  let files: string[] = [];
  for (let i = 0; i < 50 && files.length === 0; i++) {
    files = readdirSync(outbox).filter((f) => f.endsWith('.eml'));
    if (files.length === 0) await new Promise((r) => setTimeout(r, 100));
  }
  t.equal(files.length, 1, 'one message in the outbox');
  const mail = readFileSync(path.join(outbox, files[0]!), 'utf8');
  const passcode = /passcode is: ([A-Z0-9]{6})/.exec(mail)?.[1];
  t.ok(passcode, 'the message holds the passcode');

  const login = await runCli(['client', 'login', '--email', 'ops@example.com', '--phone', '+1 555 0100', '--mac', MAC, '--passcode', passcode!], ce);
  t.equal(login.code, 0, login.stderr);
  const { token, user } = JSON.parse(login.stdout) as { token: string; user: unknown };
  t.same(user, { email: 'ops@example.com', role: 'admin' });

  const check = await runCli(['client', 'check', '--token', token, '--mac', MAC, '--request', 'inventory.read'], ce);
  t.equal(check.code, 0);
  t.equal(JSON.parse(check.stdout).status, 'authorized');
  const viaEnv = await runCli(['client', 'check', '--mac', MAC], { ...ce, HELLWALL_TOKEN: token });
  t.equal(JSON.parse(viaEnv.stdout).status, 'authorized', 'the token can come from $HELLWALL_TOKEN, out of ps and history');
  const badData = await runCli(['client', 'check', '--mac', MAC, '--data', '{oops'], { ...ce, HELLWALL_TOKEN: token });
  t.equal(badData.code, 2);
  t.match(badData.stderr, /--data must be JSON/);
  const denied = await runCli(['client', 'check', '--token', token, '--mac', '00:1a:2b:3c:4d:5f'], ce);
  t.equal(denied.code, 1, 'an unauthorized check exits 1');
  t.equal(JSON.parse(denied.stdout).status, 'unauthorized');

  child.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM stops the server with exit code 0');
  t.ok(lines.some((l) => l.msg === 'hellwall stopped'), 'after a clean shutdown');
  const logText = lines.map((l) => JSON.stringify(l)).join('\n');
  t.notOk(logText.includes(token.slice(15)), 'the token is not in the server log');
  t.notOk(logText.includes(passcode!), 'the passcode is not in the server log');
  t.notOk(logText.includes(PASSWORD), 'the password is not in the server log');
});

t.test('user add reads the password from standard input when it is piped', async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-proc-'));
  const r = spawnSync(process.execPath, [CLI, 'user', 'add', '--email', 'piped@example.com', '--phone', '+1 555 0102'], {
    env: env(dataDir),
    input: `${PASSWORD}\nignored second line\n`,
    encoding: 'utf8',
  });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /added user piped@example\.com/);
});

t.test('a port already in use stops start-up with exit code 1 and a clear log line', async (t) => {
  const { createServer } = await import('node:net');
  const blocker = createServer().listen(0, '127.0.0.1');
  await new Promise((r) => blocker.once('listening', r));
  t.teardown(() => blocker.close());
  const port = (blocker.address() as { port: number }).port;
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-proc-'));
  const r = spawnSync(process.execPath, [MAIN], { env: env(dataDir, { HELLWALL_PORT: String(port) }), encoding: 'utf8', timeout: 30_000 });
  t.equal(r.status, 1);
  const fatal = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: number; msg: string; err?: string }).find((l) => l.level === 60);
  t.equal(fatal?.msg, 'cannot start');
  t.match(fatal?.err, /EADDRINUSE/);
});

/** Runs the CLI under a real pseudo-terminal (util-linux `script`), typing `keys` once it prompts. */
function underPty(args: string[], e: NodeJS.ProcessEnv, keys: string): Promise<{ code: number | null; output: string }> {
  const child = spawn('script', ['-qec', [process.execPath, CLI, ...args].map((a) => `'${a}'`).join(' '), '/dev/null'], { env: e });
  let output = '';
  let typed = false;
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
    if (!typed && output.includes('Password for')) {
      typed = true;
      child.stdin.write(keys);
    }
  });
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, output })));
}

t.test('the password prompt does not echo, and ignores arrow keys and honours backspace', async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-proc-'));
  const typed = await underPty(['user', 'add', '--email', 'tty@example.com', '--phone', '5550100'], env(dataDir), 'correct horse\x1b[Dx\x7f battery staple\r');
  t.equal(typed.code, 0, typed.output);
  t.notMatch(typed.output, /battery/, 'nothing typed is echoed');
  // The account works with exactly the password meant: log in through the real server.
  const { child, port } = await startServer(env(dataDir, { HELLWALL_PORT: '0' }));
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const ce = env(dataDir, { HELLWALL_PORT: String(port), HELLWALL_PASSWORD: 'correct horse battery staple' });
  t.equal((await runCli(['client', 'passcode', '--email', 'tty@example.com', '--mac', MAC], ce)).code, 0);
  let mail = '';
  for (let i = 0; i < 50 && !mail; i++) {
    const files = readdirSync(path.join(dataDir, 'outbox'));
    if (files[0]) mail = readFileSync(path.join(dataDir, 'outbox', files[0]), 'utf8');
    else await new Promise((r) => setTimeout(r, 100));
  }
  t.match(mail, /passcode is: [A-Z0-9]{6}/, 'a passcode was mailed: the typed password is the stored one');

  const cancelled = await underPty(['user', 'add', '--email', 'cancel@example.com', '--phone', '5550100'], env(dataDir), 'abc\x03');
  t.equal(cancelled.code, 130, 'Ctrl-C cancels with exit code 130');
  t.match(cancelled.output, /cancelled/);
});

t.test('an invalid configuration stops start-up with a message naming the option', async (t) => {
  const r = spawnSync(process.execPath, [MAIN], { env: env('/tmp/unused', { HELLWALL_PORT: 'seventy' }), encoding: 'utf8' });
  t.equal(r.status, 2);
  t.match(r.stderr, /invalid option port \(env HELLWALL_PORT\)/);
});

t.test('the CLI explains its usage and refuses unknown commands', async (t) => {
  const help = await runCli(['help'], env('/tmp/unused'));
  t.equal(help.code, 0);
  t.match(help.stdout, /Usage: hellwall/);
  const bad = await runCli(['frobnicate'], env('/tmp/unused'));
  t.equal(bad.code, 2);
  t.match(bad.stderr, /unknown command "frobnicate"/);
  const missing = await runCli(['user', 'add', '--email', 'x@example.com'], env(mkdtempSync(path.join(os.tmpdir(), 'hellwall-proc-')), { HELLWALL_PASSWORD: PASSWORD }));
  t.equal(missing.code, 2);
  t.match(missing.stderr, /--phone is required/);
});

t.test('user add warns under 12 characters and refuses a common password, saying why', async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-proc-'));
  const short = await runCli(['user', 'add', '--email', 'short@example.com', '--phone', '+1 555 0103'], env(dataDir, { HELLWALL_PASSWORD: 'vq7#kz2wab1' }));
  t.equal(short.code, 0, 'accepted');
  t.match(short.stderr, /shorter than the recommended 12/);
  const common = await runCli(['user', 'add', '--email', 'common@example.com', '--phone', '+1 555 0104'], env(dataDir, { HELLWALL_PASSWORD: 'Baseball1' }));
  t.equal(common.code, 1, 'refused');
  t.match(common.stderr, /commonly used passwords/);
  t.notMatch(common.stderr, /Baseball1/i, 'without repeating the password');
});
