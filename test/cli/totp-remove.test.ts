import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import { cli, env } from '../helpers/processes.js';

// `hellwall user totp-remove`: the administrator's way out for an operator who lost both the
// authenticator and the recovery codes. The factor's rows go, re-enrolment is required, and both
// the change and the refusals are audited with the CLI as actor.

t.test('user totp-remove removes the authenticator and its recovery codes, and refuses when there is none', async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-totp-remove-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const e = env(dataDir);
  t.equal(cli(['user', 'add', '--email', 'ann@example.com', '--phone', '+1 555 0100'], { ...e, HELLWALL_PASSWORD: 'correct horse battery staple' }).code, 0);
  const none = cli(['user', 'totp-remove', '--email', 'ann@example.com'], e);
  t.equal(none.code, 1);
  t.match(none.stderr, /has no authenticator/);
  t.equal(cli(['user', 'totp-remove', '--email', 'nobody@example.com'], e).code, 1);

  // An enrolled authenticator, as totp.confirm leaves it (the row contents do not matter to removal).
  const store = openSqliteStore(path.join(dataDir, 'hellwall.db'));
  const ann = (await store.findUserByEmail('ann@example.com'))!;
  await store.putFactor({ userId: ann.id, factor: 'totp', confirmedAt: 1, mustEnroll: false, lastStep: 9, createdAt: 1 });
  await store.putSecret({ userId: ann.id, kind: 'totp', keyId: 1, sealed: Buffer.alloc(40, 1), updatedAt: 1 });
  await store.putSecret({ userId: ann.id, kind: 'totp-recovery-key', keyId: 1, sealed: Buffer.alloc(60, 2), updatedAt: 1 });
  await store.putRecoveryCodes(ann.id, [Buffer.alloc(32, 3), Buffer.alloc(32, 4)], 1);
  await store.close();

  const done = cli(['user', 'totp-remove', '--email', 'ANN@example.com'], e);
  t.equal(done.code, 0, done.stderr);
  t.match(done.stdout, /authenticator of ann@example\.com removed/);
  const after = openSqliteStore(path.join(dataDir, 'hellwall.db'));
  t.teardown(() => after.close());
  t.match(await after.listFactors(ann.id), [{ factor: 'totp', confirmedAt: null, mustEnroll: true }], 'enrolment required at the next login');
  t.equal(await after.getSecret(ann.id, 'totp'), undefined);
  t.equal(await after.getSecret(ann.id, 'totp-recovery-key'), undefined);
  t.equal(await after.countRecoveryCodes(ann.id), 0);
  const rows = await after.queryAudit({ action: 'admin.user.totp_remove', limit: 10 });
  t.same(rows.map((r) => [r.outcome, r.detail?.reason ?? null]), [['success', null], ['failure', 'not-found'], ['failure', 'no-totp']]);
  t.ok(rows.every((r) => r.actor?.startsWith('cli:')), 'the CLI is the actor');
});
