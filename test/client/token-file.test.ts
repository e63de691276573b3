import { chmodSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { defaultTokenFile, readTokenFile, removeTokenFile, TokenFileError, writeTokenFile } from '../../src/client/token-file.js';

const STORED = { token: 'Awfer_hellwall_' + 'A'.repeat(43), mac: '00:1a:2b:3c:4d:5e', host: '127.0.0.1', port: 7443, email: 'ops@example.com' };

t.test('the token file is written 0600 whatever the umask, read back, and removed', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-tok-'));
  const file = path.join(dir, 'token');
  t.equal(readTokenFile(file), null, 'no file: no token');
  const old = process.umask(0);
  try {
    writeTokenFile(file, STORED);
  } finally {
    process.umask(old);
  }
  t.equal(statSync(file).mode & 0o777, 0o600);
  t.same(readTokenFile(file), { stored: STORED, loosened: false });
  writeTokenFile(file, { ...STORED, token: 'Awfer_hellwall_' + 'B'.repeat(43) });
  t.equal(readTokenFile(file)?.stored.token, 'Awfer_hellwall_' + 'B'.repeat(43), 'replaced whole');
  t.same(readdirSync(dir), ['token'], 'no temporary file is left beside it');
  t.equal(removeTokenFile(file), true);
  t.equal(removeTokenFile(file), false, 'removing twice is not an error');
});

t.test('a temporary file left by a crash is replaced, and a loose file is tightened', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-tok-'));
  const file = path.join(dir, 'token');
  writeFileSync(`${file}.${process.pid}.tmp`, 'half a token');
  writeTokenFile(file, STORED);
  t.same(readdirSync(dir), ['token']);
  chmodSync(file, 0o644);
  t.equal(readTokenFile(file)?.loosened, true, 'the caller is told, to warn');
  t.equal(statSync(file).mode & 0o777, 0o600);
});

t.test('a file that is not a token file is refused with advice, not used', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-tok-'));
  for (const content of ['not json', '{"token":""}', '{"token":"x"}', '[]']) {
    writeFileSync(path.join(dir, 'bad'), content);
    t.throws(() => readTokenFile(path.join(dir, 'bad')), TokenFileError, content);
  }
  t.throws(() => readTokenFile(dir), /not a regular file/);
  t.match(readFileSync(path.join(dir, 'bad'), 'utf8'), '[]', 'left as it was');
});

t.test('HELLWALL_TOKEN_FILE names the file; ~/.hellwall-token otherwise', async (t) => {
  t.equal(defaultTokenFile({}, '/home/ops'), '/home/ops/.hellwall-token');
  t.equal(defaultTokenFile({ HELLWALL_TOKEN_FILE: '/run/ops/token' }, '/home/ops'), '/run/ops/token');
});
