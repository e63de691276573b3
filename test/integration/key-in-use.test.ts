import { randomBytes } from 'node:crypto';
import t from 'tap';
import { KeyRingError, retireKey, rotateKey } from '../../src/keys/key-ring.js';
import { startHarness } from '../helpers/harness.js';

// Issue 12 item 8: `key retire` judges by what running servers use (recorded in the database at
// start, at each reload and every minute), not by the files on disk.

t.test('a key a running server still signs with cannot be retired until it has reloaded', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const before = await h.login(client);
  const next = rotateKey(h.dataDir, randomBytes, h.app.log);
  t.equal(next, 2);
  const now = h.clock.now;
  const refused = await retireKey({ dataDir: h.dataDir, store: h.app.store, now, log: h.app.log }, 1).catch((e: unknown) => e);
  t.ok(refused instanceof KeyRingError && refused.code === 'key-in-use', 'refused: the server has not reloaded');
  t.match((refused as Error).message, /SIGHUP/, 'saying what to do');
  t.equal((await client.check({ token: before.token, mac: '00:1a:2b:3c:4d:5e', request: 'x.read' })).status, 'authorized', 'nothing was revoked');

  t.ok(await h.app.reload(), 'SIGHUP: the new key is current');
  const after = await h.login(client);
  const done = await retireKey({ dataDir: h.dataDir, store: h.app.store, now, log: h.app.log }, 1);
  t.equal(done.sessions, 1, 'the session made with key 1 ends');
  t.equal((await client.check({ token: after.token, mac: '00:1a:2b:3c:4d:5e', request: 'x.read' })).status, 'authorized', 'the one made with key 2 goes on');
});

t.test('a server that stopped cleanly no longer holds its key', async (t) => {
  const h = await startHarness(t);
  t.equal((await h.app.store.listNodes(0)).length, 1, 'the running server is recorded');
  rotateKey(h.dataDir, randomBytes, h.app.log);
  await h.app.close();
  const store = (await import('../../src/store/sqlite-store.js')).openSqliteStore(`${h.dataDir}/hellwall.db`);
  t.teardown(() => store.close());
  t.same(await store.listNodes(0), [], 'forgotten at shutdown');
  const r = await retireKey({ dataDir: h.dataDir, store, now: h.clock.now, log: h.app.log }, 1);
  t.equal(r.alreadyRetired, false);
});
