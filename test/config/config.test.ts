import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
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
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  for (const o of OPTIONS) {
    const row = `| \`${o.key}\` | \`${o.env}\` | \`${String(o.default)}\` |`;
    t.ok(readme.includes(row), `README has the row for ${o.key}`);
  }
});
