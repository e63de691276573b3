import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { ROOT } from '../helpers/root.js';
import { ConfigError, loadConfig, OPTIONS } from '../../src/config.js';

t.test('defaults are the embedded ones', async (t) => {
  const c = loadConfig({}, {}, undefined);
  t.equal(c.host, '127.0.0.1');
  t.equal(c.port, 7443);
  t.equal(c.dataDir, path.resolve('./data'));
  t.equal(c.maxFrameBytes, 65536);
  t.same(c.tokens, { ttlSeconds: 3600, idleSeconds: 86400, absoluteSeconds: 2592000, graceSeconds: 30 });
  t.same(c.passcodes, { ttlSeconds: 180, maxAttempts: 5 });
  t.equal(c.mail.smtpHost, '', 'no SMTP: the outbox');
});

t.test('environment overrides file, overrides override environment', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-cfg-'));
  const file = path.join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ port: 1000, tokens: { ttlSeconds: 60 }, mail: { smtpHost: 'mail.internal' } }));
  const c = loadConfig({ HELLWALL_CONFIG: file, HELLWALL_PORT: '2000', HELLWALL_SMTP_SECURITY: 'tls', HELLWALL_SMTP_TLS_VERIFY: 'false' }, { port: 3000 });
  t.equal(c.port, 3000);
  t.equal(c.tokens.ttlSeconds, 60);
  t.equal(c.mail.smtpHost, 'mail.internal');
  t.equal(c.mail.smtpSecurity, 'tls');
  t.equal(c.mail.smtpRejectUnauthorized, false);
  t.equal(loadConfig({ HELLWALL_CONFIG: file, HELLWALL_PORT: '2000' }).port, 2000);
});

t.test('the config is frozen', async (t) => {
  const c = loadConfig({}, {}, undefined);
  t.ok(Object.isFrozen(c));
  t.ok(Object.isFrozen(c.tokens));
  t.throws(() => {
    (c as { port: number }).port = 1;
  });
});

t.test('invalid values stop start-up with a message naming the option', async (t) => {
  t.throws(() => loadConfig({ HELLWALL_PORT: 'abc' }), new ConfigError('invalid option port (env HELLWALL_PORT): expected an integer'));
  t.throws(() => loadConfig({ HELLWALL_TOKEN_TTL: '0' }), { message: /tokens\.ttlSeconds .* at least 1/ });
  t.throws(() => loadConfig({ HELLWALL_LOG_LEVEL: 'loud' }), { message: /logLevel .*one of/ });
  t.throws(() => loadConfig({ HELLWALL_SMTP_TLS_VERIFY: 'maybe' }), { message: /mail\.smtpRejectUnauthorized/ });
  t.throws(() => loadConfig({}, { tokens: { ttl: 5 } }), { message: /unknown option tokens\.ttl/ });
  t.throws(() => loadConfig({ HELLWALL_TLS_CERT: '/x.pem' }), { message: /set both or neither/ });
  t.throws(() => loadConfig({ HELLWALL_CONFIG: '/nonexistent/hellwall.json' }), { message: /cannot read config file/ });
  t.throws(() => loadConfig({ HELLWALL_MAX_FRAME_BYTES: String(2 ** 32 - 1) }), { message: /maxFrameBytes .* at most 16777216/ });
});

t.test('options that are unsafe together are refused', async (t) => {
  t.throws(() => loadConfig({ HELLWALL_ROTATION_GRACE: '3600' }), { message: /tokens\.graceSeconds: must be shorter than tokens\.ttlSeconds/ }, 'a grace as long as the token would defeat reuse detection');
  t.throws(() => loadConfig({ HELLWALL_TOKEN_TTL: '7200', HELLWALL_RENEW_ABSOLUTE: '3600' }), { message: /tokens\.ttlSeconds: must not exceed tokens\.absoluteSeconds/ });
  t.throws(() => loadConfig({ HELLWALL_SMTP_SECURITY: 'none', HELLWALL_SMTP_USER: 'u' }), { message: /password in clear/ });
  t.equal(loadConfig({ HELLWALL_SMTP_SECURITY: 'none' }).mail.smtpSecurity, 'none', 'plain SMTP without credentials (a local relay) is allowed');
});

t.test('README documents every option with its env var and default', async (t) => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  for (const o of OPTIONS) {
    const row = `| \`${o.key}\` | \`${o.env}\` | \`${String(o.default)}\` |`;
    t.ok(readme.includes(row), `README has the row for ${o.key}`);
  }
});

t.test('README has exactly the table the schema generates: every row, its text, nothing stale', async (t) => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  // The row format of scripts/gen-readme-config.mjs (`npm run gen:readme`).
  const head = '| option | env var | default | meaning |\n| --- | --- | --- | --- |\n';
  const rows = OPTIONS.map((o) => `| \`${o.key}\` | \`${o.env}\` | \`${String(o.default)}\` | ${o.doc} |`);
  t.ok(readme.includes(`${head}${rows.join('\n')}\n\n`), 'README.md is current: run `npm run gen:readme`');
});

t.test('every option of the schema has a key, a HELLWALL_ variable of its own, a meaning, and a default it accepts', async (t) => {
  t.equal(new Set(OPTIONS.map((o) => o.key)).size, OPTIONS.length, 'keys are unique');
  t.equal(new Set(OPTIONS.map((o) => o.env)).size, OPTIONS.length, 'env vars are unique');
  for (const o of OPTIONS) {
    t.match(o.env, /^HELLWALL_[A-Z0-9_]+$/, `${o.key}: ${o.env}`);
    t.ok(o.doc.length > 0, `${o.key} is documented`);
    t.not(o.env, 'HELLWALL_CONFIG', 'HELLWALL_CONFIG names the file and is no option');
  }
  const c = loadConfig({}, {}, undefined);
  for (const o of OPTIONS) {
    const value = o.key.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown>)[k], c);
    t.equal(value, o.key === 'dataDir' ? path.resolve(String(o.default)) : o.default, `${o.key} defaults to ${String(o.default)}`);
  }
});

t.test('the Config type is the schema: choices are unions, every field is read-only, no other key exists', async (t) => {
  const c = loadConfig({}, {}, undefined);
  const security: 'tls' | 'starttls' | 'none' = c.mail.smtpSecurity;
  const level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent' = c.logLevel;
  const ttl: number = c.tokens.ttlSeconds;
  const on: boolean = c.limits.enabled;
  // @ts-expect-error read-only
  if (Math.random() > 2) c.tokens.ttlSeconds = 1;
  // @ts-expect-error no such option
  t.equal(c.tokens.ttl, undefined);
  t.same([security, level, ttl, on], ['starttls', 'info', 3600, true]);
});

t.test('text is read as it always was: integers in decimal, booleans as true/false/1/0', async (t) => {
  t.equal(loadConfig({ HELLWALL_LIMITS: '0', HELLWALL_OPS_ENABLED: '1' }).limits.enabled, false);
  t.equal(loadConfig({ HELLWALL_OPS_ENABLED: '1' }).ops.enabled, true);
  t.equal(loadConfig({ HELLWALL_PORT: ' 8443 ' }).port, 8443, 'surrounding blanks are ignored');
  t.equal(loadConfig({}, { port: '9443' }).port, 9443, 'overrides may give a number as text');
  for (const text of ['1e3', '0x10', '12.0', '', '8443abc']) {
    t.throws(() => loadConfig({ HELLWALL_PORT: text }), new ConfigError('invalid option port (env HELLWALL_PORT): expected an integer'), JSON.stringify(text));
  }
  t.throws(() => loadConfig({ HELLWALL_MAX_CONNECTIONS: '99999999999999999999' }), new ConfigError('invalid option maxConnections (env HELLWALL_MAX_CONNECTIONS): expected an integer'), 'beyond 2^53: not what was written');
  t.throws(() => loadConfig({ HELLWALL_LIMITS: 'yes' }), new ConfigError('invalid option limits.enabled (env HELLWALL_LIMITS): expected true or false'));
});

t.test('values of the wrong type are refused, never converted', async (t) => {
  t.throws(() => loadConfig({}, { port: true }), new ConfigError('invalid option port (overrides): expected an integer'));
  t.throws(() => loadConfig({}, { port: null }), new ConfigError('invalid option port (overrides): expected an integer'));
  t.throws(() => loadConfig({}, { host: 5 }), new ConfigError('invalid option host (overrides): expected a string'));
  t.throws(() => loadConfig({}, { ops: { enabled: 'maybe' } }), new ConfigError('invalid option ops.enabled (overrides): expected true or false'));
  t.throws(() => loadConfig({}, { logLevel: 3 }), new ConfigError('invalid option logLevel (overrides): expected one of trace, debug, info, warn, error, fatal, silent'));
  t.throws(() => loadConfig({}, { port: 1.5 }), new ConfigError('invalid option port (overrides): expected an integer'));
  t.throws(() => loadConfig({}, { limits: { ipv6Prefix: 129 } }), new ConfigError('invalid option limits.ipv6Prefix (overrides): must be at most 128'));
});

t.test('a config file: its bad values name the file even when the environment overrides them; $comment keys are ignored', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-cfg-'));
  const file = path.join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ $comment: 'staging', port: 'abc', tokens: { $comment: 'short', ttlSeconds: 60 } }));
  t.throws(() => loadConfig({ HELLWALL_CONFIG: file, HELLWALL_PORT: '2000' }), new ConfigError(`invalid option port (config file ${file}): expected an integer`));
  writeFileSync(file, JSON.stringify({ $comment: 'staging', tokens: { $comment: 'short', ttlSeconds: 60 } }));
  t.equal(loadConfig({ HELLWALL_CONFIG: file }).tokens.ttlSeconds, 60);
  writeFileSync(file, JSON.stringify({ tokens: { ttlSecond: 60 } }));
  t.throws(() => loadConfig({ HELLWALL_CONFIG: file }), new ConfigError('unknown option tokens.ttlSecond (config file)'));
  writeFileSync(file, JSON.stringify({ tokens: 60 }));
  t.throws(() => loadConfig({ HELLWALL_CONFIG: file }), new ConfigError('unknown option tokens (config file)'), 'a group given as a value');
  writeFileSync(file, '{"__proto__": {"polluted": true}}');
  t.throws(() => loadConfig({ HELLWALL_CONFIG: file }), new ConfigError('unknown option __proto__.polluted (config file)'));
  t.equal(({} as Record<string, unknown>).polluted, undefined);
});
