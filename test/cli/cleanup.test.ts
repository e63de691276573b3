import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import { env } from '../helpers/processes.js';
import { runCli } from '../helpers/cli.js';

const DAY = 86_400_000;

/** A data directory whose database holds dead and live rows, relative to the real clock. */
async function seeded(): Promise<string> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-cleanup-'));
  const store = openSqliteStore(path.join(dataDir, 'hellwall.db'));
  const now = Date.now();
  const userId = (await store.createUser({ email: 'ops@example.com', phone: '+1555', role: 'user', passwordHash: 'h', createdAt: now })).id;
  const session = (n: number, s: { createdAt: number; expiresAt: number; absoluteExpiresAt: number }) =>
    store.createSession({ userId, master: Buffer.alloc(32, n), mac: 'm', ip: '127.0.0.1', keyId: 1, ...s });
  for (let n = 1; n <= 3; n++) await session(n, { createdAt: now - 40 * DAY, expiresAt: now - 39 * DAY, absoluteExpiresAt: now - 10 * DAY });
  const renewed = await session(9, { createdAt: now - 3 * DAY, expiresAt: now - 3 * DAY + 1000, absoluteExpiresAt: now + 20 * DAY });
  await store.rotateSession({ sessionId: renewed, oldMaster: Buffer.alloc(32, 9), newMaster: Buffer.alloc(32, 10), generation: 0, now: now - 2 * DAY, expiresAt: now - 2 * DAY + 3_600_000, graceUntil: now - 2 * DAY + 30_000, nonce: Buffer.alloc(16), keyId: 1, oldKeyId: 1 });
  await session(20, { createdAt: now, expiresAt: now + 3_600_000, absoluteExpiresAt: now + 30 * DAY });
  await store.putPasscode({ userId, hash: Buffer.alloc(32), mac: 'm', seenIp: '127.0.0.1', reportedIp: null, createdAt: now - 600_000, expiresAt: now - 400_000, attempts: 0, keyId: 1 });
  // Three audit rows past the default retention (365 days), one inside it.
  await store.appendAudit([400, 380, 366, 10].map((days) => ({ at: now - days * DAY, action: 'login', outcome: 'success' as const, userId, email: 'ops@example.com' })));
  await store.close();
  return dataDir;
}

t.test('hellwall cleanup --json deletes dead rows once and prints the counts', async (t) => {
  const dataDir = await seeded();
  const first = await runCli(['cleanup', '--json'], env(dataDir));
  t.equal(first.code, 0, first.stderr);
  t.same(JSON.parse(first.stdout), { deleted: { passcodes: 1, sessions: 4, retiredTokens: 1, auditRows: 3, counters: 0 }, batches: 1, busy: false });
  const again = await runCli(['cleanup', '--json'], env(dataDir));
  t.same(JSON.parse(again.stdout).deleted, { passcodes: 0, sessions: 0, retiredTokens: 0, auditRows: 0, counters: 0 }, 'nothing left; the live session stays');
  const kept = JSON.parse((await runCli(['audit', '--json'], env(dataDir))).stdout) as Array<{ at: number }>;
  t.equal(kept.length, 1, 'the audit row inside retention stays');
  t.ok(kept[0]!.at > Date.now() - 11 * DAY);
});

t.test('hellwall cleanup keeps audit rows for audit.retentionDays; 0 keeps them forever', async (t) => {
  const dataDir = await seeded();
  const forever = await runCli(['cleanup', '--json'], env(dataDir, { HELLWALL_AUDIT_RETENTION_DAYS: '0' }));
  t.equal(forever.code, 0, forever.stderr);
  t.equal(JSON.parse(forever.stdout).deleted.auditRows, 0);
  const week = await runCli(['cleanup', '--json'], env(dataDir, { HELLWALL_AUDIT_RETENTION_DAYS: '7' }));
  t.equal(JSON.parse(week.stdout).deleted.auditRows, 4);
  t.same(JSON.parse((await runCli(['audit', '--json'], env(dataDir))).stdout), []);
});

t.test('hellwall cleanup prints a table for people, and runs to completion past the batch size', async (t) => {
  const dataDir = await seeded();
  const r = await runCli(['cleanup'], env(dataDir, { HELLWALL_HOUSEKEEPING_BATCH: '2' }));
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'passcodes      1\nsessions       4\nretiredTokens  1\nauditRows      3\ncounters       0\n');
  t.match((await runCli(['help'], env(dataDir))).stdout, /^  cleanup .*\n/m, 'listed in the usage');
});
