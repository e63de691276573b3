import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { isGroup } from '../../src/cli/command.js';
import { bashCompletion } from '../../src/cli/completion.js';
import { printable, table, useColor } from '../../src/cli/output.js';
import { ENTRIES } from '../../src/cli/registry.js';
import { createLogger } from '../../src/log.js';
import { runCli } from '../helpers/cli.js';

// Issue 17 item 5: help everywhere, --version, --data-dir, the new-data-directory warning, config
// show, completion, NO_COLOR, readable logs on a terminal; in-process through main().

const PASSWORD = 'correct horse battery staple';

function tempDir(t: Test): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-conv-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('--help on every command and group: usage, options and an example, exit 0, nothing run', async (t) => {
  const env = { HELLWALL_DATA_DIR: '/nonexistent/hellwall-help' };
  for (const entry of ENTRIES) {
    const commands = isGroup(entry) ? entry.commands.map((c) => [`${entry.name} ${c.name}`, c] as const) : [[entry.name, entry] as const];
    for (const [words, cmd] of commands) {
      const r = await runCli([...words.split(' '), '--help'], env);
      t.equal(r.code, 0, `${words} --help exits 0`);
      t.match(r.stdout, new RegExp(`^Usage: hellwall ${words} `), `${words}: usage`);
      t.match(r.stdout, /\nOptions:\n[^]*--help[^]*\nExample:\n {2}\S/, `${words}: options and an example`);
      for (const option of Object.keys(cmd.options)) t.match(r.stdout, `--${option}`, `${words}: --${option} documented`);
    }
    if (isGroup(entry)) {
      const alone = await runCli([entry.name], env);
      if (!entry.noCommand) {
        t.equal(alone.code, 2, `hellwall ${entry.name} alone is a usage answer`);
        t.match(alone.stderr, new RegExp(`^Usage: hellwall ${entry.name} <command>[^]*${entry.commands.map((c) => c.name).join('[^]*')}`), `${entry.name} alone lists its commands`);
      }
      t.equal((await runCli([entry.name, '--help'], env)).code, 0);
    }
  }
  t.notOk(existsSync('/nonexistent/hellwall-help'), 'no help created a data directory');
  const serve = await runCli(['serve', '--help'], env);
  t.match(serve.stdout, /^Usage: hellwall serve/, 'serve --help prints help and returns (no server started)');
  const top = await runCli(['--help'], env);
  for (const entry of ENTRIES) t.match(top.stdout, new RegExp(`\\n  ${entry.name} `), `${entry.name} in the top-level help`);
  t.same(await runCli(['help', 'user', 'add'], env), await runCli(['user', 'add', '--help'], env), 'help <command> is <command> --help');
  const none = await runCli([], env);
  t.equal(none.code, 2);
  t.match(none.stderr, /^Usage: hellwall <command>/);
});

t.test('--version prints the package version', async (t) => {
  const r = await runCli(['--version'], {});
  t.equal(r.code, 0);
  t.match(r.stdout, /^hellwall \d+\.\d+\.\d+\n$/);
});

t.test('usage errors name the problem and where the help is; unexpected errors give no stack without --debug', async (t) => {
  const bad = await runCli(['stats', '--bogus'], {});
  t.equal(bad.code, 2);
  t.match(bad.stderr, /Unknown option '--bogus'[^]*hellwall stats --help/);
  const extra = await runCli(['stats', 'extra'], {});
  t.equal(extra.code, 2);
  t.match(extra.stderr, /unexpected argument "extra"/);
});

t.test('--data-dir on local commands; a new empty data directory is announced before it is made', async (t) => {
  const dir = path.join(tempDir(t), 'fresh');
  const first = await runCli(['user', 'list', '--data-dir', dir], { HELLWALL_LOG_LEVEL: 'silent' });
  t.equal(first.code, 0, first.stderr);
  t.match(first.stderr, `hellwall: warning: no data directory ${dir}: creating a new, empty one`);
  t.ok(existsSync(path.join(dir, 'hellwall.db')), '--data-dir was used');
  const add = await runCli(['user', 'add', '--email', 'ops@example.com', '--phone', '+1 555 0100', '--data-dir', dir], { HELLWALL_PASSWORD: PASSWORD, HELLWALL_LOG_LEVEL: 'silent' });
  t.equal(add.code, 0, add.stderr);
  t.equal(add.stderr, '', 'no warning once the database exists');
  const list = await runCli(['user', 'list', '--json'], { HELLWALL_DATA_DIR: dir });
  t.match(JSON.parse(list.stdout), [{ email: 'ops@example.com', createdAt: Number }], 'the env var names the same directory; JSON times are numbers');
  t.match((await runCli(['user', 'list'], { HELLWALL_DATA_DIR: dir })).stdout, /ops@example\.com\s+\+15550100\s+user\s+no\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/, 'tables show ISO-8601');
});

t.test('key list: created and retired times apart, --json on one line with numbers', async (t) => {
  const dir = tempDir(t);
  const e = { HELLWALL_DATA_DIR: dir, HELLWALL_LOG_LEVEL: 'silent' };
  t.equal((await runCli(['key', 'rotate'], e)).code, 0);
  const before = JSON.parse((await runCli(['key', 'list', '--json'], e)).stdout) as Array<{ id: number; createdAt: number | null; retiredAt: number | null }>;
  t.equal((await runCli(['key', 'retire', '1'], e)).code, 0);
  const r = await runCli(['key', 'list', '--json'], e);
  t.equal(r.stdout.split('\n').length, 2, 'one line');
  const after = JSON.parse(r.stdout) as typeof before;
  t.match(after, [{ id: 1, createdAt: null, retiredAt: Number }, { id: 2, createdAt: before[1]!.createdAt, retiredAt: null }]);
  const text = (await runCli(['key', 'list'], e)).stdout.split('\n');
  t.match(text[0], /^id\s+status\s+created\s+retired\s+sessions$/);
  t.match(text[1], /^1\s+retired\s+-\s+\d{4}-\S+Z\s+0$/, 'a retired key does not show its retirement as its creation');
});

t.test('config show: every option, its source, secrets masked', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'hellwall.json');
  writeFileSync(file, JSON.stringify({ port: 7500, mail: { smtpPass: 'file-secret' } }));
  const env = { HELLWALL_CONFIG: file, HELLWALL_PORT: '7600', HELLWALL_STORE_URL: 'postgres://hw:dbsecret@db/hw', HELLWALL_DATA_DIR: dir };
  const r = await runCli(['config', 'show', '--json'], env);
  t.equal(r.code, 0, r.stderr);
  const rows = new Map((JSON.parse(r.stdout) as Array<{ key: string; value: unknown; source: string }>).map((x) => [x.key, x]));
  t.same(rows.get('port'), { key: 'port', value: 7600, source: 'env HELLWALL_PORT' }, 'env wins over the file');
  t.same(rows.get('mail.smtpPass'), { key: 'mail.smtpPass', value: '***', source: `file ${file}` });
  t.same(rows.get('store.url'), { key: 'store.url', value: 'postgres://hw:***@db/hw', source: 'env HELLWALL_STORE_URL' });
  t.same(rows.get('tokens.ttlSeconds'), { key: 'tokens.ttlSeconds', value: 3600, source: 'default' });
  const text = await runCli(['config', 'show', '--changed'], env);
  t.notMatch(text.stdout, /secret/, 'no secret in the table');
  t.match(text.stdout, /^option\s+value\s+source\n/);
  t.notMatch(text.stdout, /tokens\.ttlSeconds/, '--changed leaves defaults out');
  const bad = await runCli(['config', 'show'], { HELLWALL_PORT: 'seventy' });
  t.equal(bad.code, 1);
  t.match(bad.stderr, /invalid option port \(env HELLWALL_PORT\)/);
});

t.test('completion: bash completes commands, subcommands, options and choices', async (t) => {
  const r = await runCli(['completion', 'bash'], {});
  t.equal(r.code, 0);
  t.equal(r.stdout.trim(), bashCompletion(ENTRIES).trim());
  const complete = (line: string): string[] => {
    const words = line.split(' ');
    const script = `${r.stdout}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _hellwall; printf '%s\\n' "\${COMPREPLY[@]}"`;
    return spawnSync('bash', ['-c', script], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  };
  t.same(complete('hellwall us'), ['user']);
  t.same(complete('hellwall user se'), ['set-role']);
  t.same(complete('hellwall audit --out'), ['--outcome']);
  t.same(complete('hellwall audit --outcome d'), ['denied']);
  t.same(complete('hellwall sessions revoke --'), ['--id', '--email', '--data-dir', '--help']);
  const zsh = await runCli(['completion', 'zsh'], {});
  t.match(zsh.stdout, /bashcompinit[^]*complete -F _hellwall hellwall/);
  t.equal((await runCli(['completion', 'fish'], {})).code, 2, 'an unknown shell is a usage error');
});

t.test('user-supplied text is escaped in tables; colour only on a terminal without NO_COLOR', async (t) => {
  t.equal(printable('a\u001b[2Jb\u202ec'), 'a\\u001b[2Jb\\u202ec');
  t.notMatch(table(['email'], [['evil\u001b]0;x\u0007@example.com']]), /[\u0000-\u0009\u000b-\u001f]/, 'no control character but the line ends');
  t.equal(useColor({}, { isTTY: true }), true);
  t.equal(useColor({ NO_COLOR: '1' }, { isTTY: true }), false);
  t.equal(useColor({}, { isTTY: false }), false);
});

t.test('logs: readable lines for a terminal, JSON otherwise, redaction kept either way', async (t) => {
  const lines: string[] = [];
  const sink = { write: (s: string) => void lines.push(s), isTTY: true };
  createLogger('info', sink, { pretty: true, env: { NO_COLOR: '1' } }).info({ password: 'hunter2', port: 7443 }, 'hellwall listening');
  t.match(lines[0], /INFO.*hellwall listening/);
  t.notMatch(lines[0], /\u001b\[/, 'NO_COLOR: no escape codes');
  t.notMatch(lines[0], /hunter2/, 'redacted');
  t.throws(() => JSON.parse(lines[0]!), 'not JSON');
  const json: string[] = [];
  createLogger('info', { write: (s: string) => void json.push(s) }).info({ password: 'hunter2' }, 'x');
  t.match(JSON.parse(json[0]!), { msg: 'x', password: '[redacted]' });
});
