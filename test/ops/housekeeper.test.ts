import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { Housekeeper } from '../../src/ops/housekeeper.js';
import { NO_METRICS } from '../../src/ops/metrics.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import type { ExpiredCounts, Store } from '../../src/store/store.js';
import { createLogger } from '../../src/log.js';

// The housekeeper's batch size adapts to how long batches take (maxBatchMs): a slow batch halves
// the next, fast ones double it back up to the configured size; whatever the sizes, the pass ends
// only when everything due is gone.

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 10, 21);

async function storeWithDead(t: Test, dead: number, live: number): Promise<Store> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-housekeeper-'));
  const store = openSqliteStore(path.join(dir, 'h.db'));
  t.teardown(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const user = await store.createUser({ email: 'a@example.com', phone: '+15550100', role: 'user', passwordHash: 'x', createdAt: NOW - 50 * DAY });
  await store.transaction(async (tx) => {
    for (let i = 0; i < dead + live; i++) {
      const master = Buffer.alloc(32);
      master.writeUInt32BE(i + 1);
      const alive = i >= dead;
      await tx.createSession({
        userId: user.id,
        master,
        mac: '00:1a:2b:3c:4d:5e',
        ip: '127.0.0.1',
        createdAt: NOW - 40 * DAY,
        expiresAt: alive ? NOW + DAY : NOW - 39 * DAY,
        absoluteExpiresAt: alive ? NOW + 10 * DAY : NOW - 10 * DAY,
        keyId: 1,
      });
    }
  });
  return store;
}

/** The store, with every batch's size recorded and batches above `slowAbove` rows made slow. */
function recording(store: Store, slowAbove: number, slowMs: number): { store: Store; sizes: number[] } {
  const sizes: number[] = [];
  return {
    sizes,
    store: {
      ...store,
      async deleteExpired(now, policy): Promise<ExpiredCounts> {
        sizes.push(policy.batch);
        const counts = await store.deleteExpired(now, policy);
        // Held synchronously, as a slow SQLite batch holds the event loop.
        if (policy.batch > slowAbove) for (const until = performance.now() + slowMs; performance.now() < until; );
        return counts;
      },
    },
  };
}

t.test('adaptive batches: a slow batch halves the next; the pass still deletes everything due', async (t) => {
  const store = await storeWithDead(t, 300, 5);
  const rec = recording(store, 8, 20);
  const housekeeper = new Housekeeper({
    store: rec.store,
    clock: () => NOW,
    log: createLogger('silent'),
    metrics: NO_METRICS,
    intervalMs: 0,
    maxBatchMs: 5,
    policy: { idleMs: DAY, keepRevokedMs: 0, batch: 500 },
  });
  const pass = await housekeeper.runOnce();
  t.equal(pass.deleted.sessions, 300, 'every dead session');
  t.equal((await store.listAllOpenSessions()).length, 5, 'and nothing else');
  t.equal(rec.sizes[0], 32, 'starts small rather than at the configured 500');
  t.ok(rec.sizes.every((n) => n >= 1 && n <= 500), 'never above the configured size');
  for (let i = 1; i < rec.sizes.length; i++) {
    if (rec.sizes[i - 1]! > 8) t.ok(rec.sizes[i]! <= rec.sizes[i - 1]! / 2, `after a slow batch of ${rec.sizes[i - 1]}, at most half: ${rec.sizes[i]}`);
  }
  t.ok(rec.sizes.some((n) => n <= 8), 'shrank to where batches are fast');
  t.equal(pass.batches, rec.sizes.length);
  t.equal((await housekeeper.runOnce()).deleted.sessions, 0, 'a second pass finds nothing left');
});

t.test('without maxBatchMs every batch is the configured size', async (t) => {
  const store = await storeWithDead(t, 25, 1);
  const rec = recording(store, Infinity, 0);
  const housekeeper = new Housekeeper({
    store: rec.store,
    clock: () => NOW,
    log: createLogger('silent'),
    metrics: NO_METRICS,
    intervalMs: 0,
    policy: { idleMs: DAY, keepRevokedMs: 0, batch: 10 },
  });
  const pass = await housekeeper.runOnce();
  t.same(rec.sizes, [10, 10, 10], 'two full batches, then one that is not');
  t.equal(pass.deleted.sessions, 25);
});
