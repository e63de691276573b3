import { randomBytes } from 'node:crypto';
import t from 'tap';
import { retireKey, rotateKey } from '../../src/keys/key-ring.js';
import { ALICE, MAC, startHarness, type Harness } from '../helpers/harness.js';

// Server key rotation over the real wire: sessions made under an older key keep working until it is
// retired, new ones use the current key, and renewals move sessions to it.

const HOUR = 3_600_000;

/** What `hellwall key rotate` does, then SIGHUP. */
async function rotate(h: Harness): Promise<number> {
  const id = rotateKey(h.dataDir, randomBytes, h.app.log);
  if (!(await h.app.reload())) throw new Error('the reload (SIGHUP) failed');
  return id;
}

/** What `hellwall key retire ID` does, then SIGHUP. */
async function retire(h: Harness, id: number) {
  const r = await retireKey({ dataDir: h.dataDir, store: h.app.store, now: h.clock.now, log: h.app.log }, id);
  await h.app.reload();
  return r;
}

const sessionsByKey = async (h: Harness) => Object.fromEntries(await h.app.store.countSessionsByKey(h.clock.now));

t.test('a session from before a rotation still checks authorized; a login after it uses the new key', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const before = await h.login(client);
  t.same(await sessionsByKey(h), { 1: 1 });

  t.equal(await rotate(h), 2);
  t.equal(h.app.keys.current.id, 2);
  const check = await client.check({ token: before.token, mac: MAC, request: 'r' });
  t.equal(check.status, 'authorized', 'the old key still verifies');
  t.equal((await client.check({ token: before.token, mac: '00:1a:2b:3c:4d:5f', request: 'r' })).status, 'unauthorized', 'binding still holds under the old key');

  const after = await h.login(client);
  t.same(await sessionsByKey(h), { 1: 1, 2: 1 }, 'the new session is stored with key id 2');
  t.equal((await client.check({ token: after.token, mac: MAC, request: 'r' })).status, 'authorized');
});

t.test('a rotation the server has not reloaded yet changes nothing for it', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const first = await h.login(client);
  rotateKey(h.dataDir, randomBytes, h.app.log); // the CLI, on a running server: no SIGHUP yet
  const second = await h.login(client);
  t.same(await sessionsByKey(h), { 1: 2 }, 'the server keeps its current key until it reloads');
  await h.app.reload();
  for (const login of [first, second]) {
    t.equal((await client.check({ token: login.token, mac: MAC, request: 'r' })).status, 'authorized', 'and what it issued verifies after the reload');
  }
});

t.test('renewing a session made under the old key moves it to the new key; grace and reuse detection still work', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const login = await h.login(client);
  await rotate(h);
  h.clock.advance(HOUR);
  const renewed = await client.check({ token: login.token, mac: MAC, request: 'r' });
  t.equal(renewed.status, 'renew');
  if (renewed.status !== 'renew') return;
  t.same(await sessionsByKey(h), { 2: 1 }, 'the session now uses key 2');
  t.equal((await client.check({ token: renewed.token, mac: MAC, request: 'r' })).status, 'authorized');

  h.clock.advance(10_000);
  const inflight = await client.check({ token: login.token, mac: MAC, request: 'r' });
  t.equal(inflight.status === 'renew' && inflight.token, renewed.token, 'within the grace the old-key token gets the same successor');

  h.clock.advance(30_000);
  t.equal((await client.check({ token: login.token, mac: MAC, request: 'r' })).status, 'unauthorized');
  t.equal((await client.check({ token: renewed.token, mac: MAC, request: 'r' })).status, 'unauthorized', 'reuse of the old-key token after the grace revoked the session');
});

t.test('the grace answer uses the key of the rotation, even after a later key rotation', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const login = await h.login(client);
  h.clock.advance(HOUR);
  const renewed = await client.check({ token: login.token, mac: MAC, request: 'r' });
  t.equal(renewed.status, 'renew', 'renewed under key 1');
  await rotate(h);
  h.clock.advance(5_000);
  const inflight = await client.check({ token: login.token, mac: MAC, request: 'r' });
  t.equal(inflight.status === 'renew' && renewed.status === 'renew' && inflight.token === renewed.token, true, 'the same successor');
});

t.test('a passcode issued before a rotation still logs in, and the session gets the new key', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const passcode = await h.requestPasscode(client);
  await rotate(h);
  const res = await client.login({ email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode, mac: MAC });
  t.equal(res.status, 'ok');
  t.same(await sessionsByKey(h), { 2: 1 });
});

t.test('retiring the old key ends its sessions and leaves new-key sessions alone', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const old = await h.login(client);
  await rotate(h);
  const fresh = await h.login(client);

  await t.rejects(retireKey({ dataDir: h.dataDir, store: h.app.store, now: h.clock.now, log: h.app.log }, 2), { code: 'key-current' }, 'the current key cannot be retired');

  const r = await retire(h, 1);
  t.equal(r.sessions, 1, 'one session was under key 1');
  t.equal((await client.check({ token: old.token, mac: MAC, request: 'r' })).status, 'unauthorized', 'the old-key session no longer checks');
  t.equal((await client.check({ token: fresh.token, mac: MAC, request: 'r' })).status, 'authorized', 'the new-key session does');
  t.equal(h.logs.find({ event: 'key.retire', keyId: 1, sessions: 1 }).length, 1, 'the retirement is logged with what it revoked');
  t.same(await sessionsByKey(h), { 2: 1 });
});

t.test('a passcode hashed with a key retired before it is used no longer logs in', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  await rotate(h); // 2
  const passcode = await h.requestPasscode(client); // hashed with key 2
  await rotate(h); // 3
  t.equal((await retire(h, 2)).passcodes, 1, 'the pending passcode was dropped');
  const res = await client.login({ email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode, mac: MAC });
  t.equal(res.status, 'error');
});

t.test('a session retired with its key stays unauthorized even in a server that has not reloaded', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const old = await h.login(client);
  await rotate(h);
  await retireKey({ dataDir: h.dataDir, store: h.app.store, now: h.clock.now, log: h.app.log }, 1);
  t.ok(h.app.keys.get(1), 'the server still holds key 1');
  t.equal((await client.check({ token: old.token, mac: MAC, request: 'r' })).status, 'unauthorized', 'but its session is revoked in the database');
});
