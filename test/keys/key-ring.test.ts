import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { KeyRing, KeyRingError, listKeys, retireKey, rotateKey } from '../../src/keys/key-ring.js';
import { deriveKeys, loadOrCreateServerKey } from '../../src/keys/keys.js';
import { createLogger } from '../../src/log.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import { LogSink } from '../helpers/log-sink.js';

const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'hellwall-ring-'));
const hex = (k: { export(): Buffer }) => k.export().toString('hex');
const mode = (file: string) => statSync(file).mode & 0o777;

function fixture(t: { teardown(fn: () => unknown): void }) {
  const dataDir = tmp();
  const logs = new LogSink();
  const log = createLogger('info', logs);
  const store = openSqliteStore(path.join(dataDir, 'hellwall.db'));
  t.teardown(() => store.close());
  return { dataDir, logs, log, store };
}

t.test('a new data directory gets key 1 as server.key, mode 0600', async (t) => {
  const { dataDir, log } = fixture(t);
  const ring = KeyRing.open(dataDir, randomBytes, log);
  t.equal(ring.current.id, 1);
  t.same(ring.verifying.map((k) => k.id), [1]);
  t.equal(mode(path.join(dataDir, 'server.key')), 0o600);
  t.same(listKeys(dataDir).map((k) => [k.id, k.status]), [[1, 'current']]);
});

t.test('an existing server.key becomes key 1 with the very same derived keys', async (t) => {
  const { dataDir, log } = fixture(t);
  const before = deriveKeys(loadOrCreateServerKey(dataDir, randomBytes, log));
  const ring = KeyRing.open(dataDir, randomBytes, log);
  t.equal(ring.current.id, 1);
  t.equal(hex(ring.current.master), hex(before.master));
  t.equal(hex(ring.current.passcode), hex(before.passcode));
  t.equal(hex(ring.current.rotate), hex(before.rotate));
});

t.test('rotate adds a 0600 key that becomes current at the next reload; older keys keep verifying', async (t) => {
  const { dataDir, log, logs } = fixture(t);
  const ring = KeyRing.open(dataDir, randomBytes, log);
  const first = hex(ring.current.master);
  t.equal(rotateKey(dataDir, randomBytes, log), 2);
  t.equal(mode(path.join(dataDir, 'server.key.2')), 0o600, 'the new key file is 0600');
  t.equal(ring.current.id, 1, 'a running ring keeps its keys until reloaded');
  t.same(ring.reload(), { current: 2, verifying: [2, 1] });
  t.equal(ring.current.id, 2);
  t.not(hex(ring.current.master), first, 'a different key');
  t.equal(hex(ring.get(1)!.master), first, 'key 1 is unchanged');
  t.equal(rotateKey(dataDir, randomBytes, log), 3);
  ring.reload();
  t.same(ring.verifying.map((k) => k.id), [3, 2, 1], 'current first, then newest to oldest');
  t.same(listKeys(dataDir).map((k) => [k.id, k.status]), [[1, 'verifying'], [2, 'verifying'], [3, 'current']]);
  t.ok(listKeys(dataDir).every((k) => typeof k.createdAt === 'number'));
  t.same(readdirSync(dataDir).filter((f) => f.includes('tmp')), [], 'no temporary file is left behind');
  for (const f of ['server.key', 'server.key.2', 'server.key.3']) {
    t.notOk(logs.text.includes(readFileSync(path.join(dataDir, f), 'utf8').trim()), `${f} is never logged`);
  }
});

t.test('rotate on an empty data directory first creates key 1', async (t) => {
  const { dataDir, log } = fixture(t);
  t.equal(rotateKey(dataDir, randomBytes, log), 2);
  t.same(listKeys(dataDir).map((k) => k.id), [1, 2]);
});

t.test('retire refuses the current key and unknown ids', async (t) => {
  const { dataDir, log, store } = fixture(t);
  KeyRing.open(dataDir, randomBytes, log);
  await t.rejects(retireKey({ dataDir, store, now: 1, log }, 1), { code: 'key-current' });
  await t.rejects(retireKey({ dataDir, store, now: 1, log }, 7), { code: 'key-unknown' });
  t.ok(existsSync(path.join(dataDir, 'server.key')), 'nothing was touched');
  t.type(new KeyRingError('key-none', 'x'), Error);
});

t.test('retire marks the key, deletes its material, revokes its sessions and drops its passcodes', async (t) => {
  const { dataDir, log, store } = fixture(t);
  const ring = KeyRing.open(dataDir, randomBytes, log);
  rotateKey(dataDir, randomBytes, log);
  ring.reload();
  const user = await store.createUser({ email: 'a@b.c', phone: '1', role: 'user', passwordHash: 'h', createdAt: 1 });
  const other = await store.createUser({ email: 'b@b.c', phone: '1', role: 'user', passwordHash: 'h', createdAt: 1 });
  const base = { mac: 'm', ip: 'i', createdAt: 1, expiresAt: 10, absoluteExpiresAt: 100 };
  const old = await store.createSession({ ...base, userId: user.id, master: Buffer.alloc(32, 1), keyId: 1 });
  const fresh = await store.createSession({ ...base, userId: user.id, master: Buffer.alloc(32, 2), keyId: 2 });
  const passcode = { hash: Buffer.alloc(32), mac: 'm', seenIp: 'i', reportedIp: null, createdAt: 1, expiresAt: 10, attempts: 0 };
  await store.putPasscode({ ...passcode, userId: user.id, keyId: 1 });
  await store.putPasscode({ ...passcode, userId: other.id, keyId: 2 });
  t.same([...(await store.countSessionsByKey(5))].sort(), [[1, 1], [2, 1]]);

  const r = await retireKey({ dataDir, store, now: 5, log }, 1);
  t.same(r, { sessions: 1, passcodes: 1, secrets: 0, alreadyRetired: false });
  t.notOk(existsSync(path.join(dataDir, 'server.key')), 'the key material is gone');
  t.equal(mode(path.join(dataDir, 'server.key.1.retired')), 0o600, 'the marker is 0600');
  t.equal((await store.findSessionById(old))?.revokeReason, 'key-retired');
  t.equal((await store.findSessionById(fresh))?.revokedAt, null, 'sessions under other keys are untouched');
  t.equal(await store.getPasscode(user.id), undefined);
  t.equal((await store.getPasscode(other.id))?.keyId, 2);
  t.same([...(await store.countSessionsByKey(5))], [[2, 1]]);
  t.same(listKeys(dataDir).map((k) => [k.id, k.status, k.createdAt === null]), [[1, 'retired', true], [2, 'current', false]]);

  t.equal(ring.get(1)?.id, 1, 'a running ring holds the key until it reloads');
  ring.reload();
  t.equal(ring.get(1), undefined, 'after the reload it is gone');
  t.same(ring.verifying.map((k) => k.id), [2]);
  t.same(await retireKey({ dataDir, store, now: 6, log }, 1), { sessions: 0, passcodes: 0, secrets: 0, alreadyRetired: true }, 'retiring again is harmless');
  t.equal(KeyRing.open(dataDir, randomBytes, log).current.id, 2, 'a new start does not recreate server.key');
  t.equal(rotateKey(dataDir, randomBytes, log), 3, 'ids are never reused');
});

t.test('a crash between the retired marker and deleting the key leaves the key retired; retire again finishes', async (t) => {
  const { dataDir, log, store } = fixture(t);
  KeyRing.open(dataDir, randomBytes, log);
  rotateKey(dataDir, randomBytes, log);
  writeFileSync(path.join(dataDir, 'server.key.1.retired'), 'retired\n', { mode: 0o600 });
  t.same(KeyRing.open(dataDir, randomBytes, log).verifying.map((k) => k.id), [2], 'the marker wins over the key file');
  t.equal((await retireKey({ dataDir, store, now: 1, log }, 1)).alreadyRetired, true);
  t.notOk(existsSync(path.join(dataDir, 'server.key')));
});

t.test('files the ring does not own are ignored; a truncated key file is refused loudly', async (t) => {
  const { dataDir, log } = fixture(t);
  KeyRing.open(dataDir, randomBytes, log);
  writeFileSync(path.join(dataDir, '.server.key.2.abcd.tmp'), 'partial', { mode: 0o600 });
  writeFileSync(path.join(dataDir, 'server.key.1'), randomBytes(32).toString('base64'), { mode: 0o600 });
  writeFileSync(path.join(dataDir, 'server.key.bak'), randomBytes(32).toString('base64'), { mode: 0o600 });
  t.same(KeyRing.open(dataDir, randomBytes, log).verifying.map((k) => k.id), [1]);
  writeFileSync(path.join(dataDir, 'server.key.2'), 'c2hvcnQ=\n', { mode: 0o600 });
  t.throws(() => KeyRing.open(dataDir, randomBytes, log), /shorter than 32 bytes/);
});

t.test('a failed reload keeps the keys loaded before', async (t) => {
  const { dataDir, log } = fixture(t);
  const ring = KeyRing.open(dataDir, randomBytes, log);
  const before = hex(ring.current.master);
  writeFileSync(path.join(dataDir, 'server.key.2'), 'c2hvcnQ=\n', { mode: 0o600 });
  t.throws(() => ring.reload());
  t.equal(ring.current.id, 1);
  t.equal(hex(ring.current.master), before);
});

t.test('a loose key file is tightened to 0600 when the ring loads it', async (t) => {
  const { dataDir, log, logs } = fixture(t);
  KeyRing.open(dataDir, randomBytes, log);
  rotateKey(dataDir, randomBytes, log);
  const file = path.join(dataDir, 'server.key.2');
  chmodSync(file, 0o644);
  KeyRing.open(dataDir, randomBytes, log);
  t.equal(mode(file), 0o600);
  t.equal(logs.find({ msg: 'server key is readable by group or others; tightening to 0600' }).length, 1);
});
