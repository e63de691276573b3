import t from 'tap';
import type { Actor } from '../../src/services/admin-service.js';
import type { Store, UserRecord } from '../../src/store/store.js';
import { ALICE, BOB, buildKit, IP, MAC, ROOT, SECOND, T0, type Kit, refusal, type Refusal } from '../helpers/services.js';
import { adminSessionView } from '../../src/services/views.js';

const CLI: Actor = { name: 'cli:root', auditReads: false };
const CAROL = { email: 'carol@example.com', phone: '+15550103', role: 'user', password: 'carol has a long passphrase' };
const NEW_PASSWORD = 'a brand new long passphrase';

/** A store whose transactions fail at commit while `state.failCommit`: whatever ran inside rolls back. */
function failingCommit(state: { failCommit: boolean }): (store: Store) => Store {
  return (store) =>
    new Proxy(store, {
      get: (target, prop, receiver) =>
        prop === 'transaction'
          ? <T>(fn: Parameters<Store['transaction']>[0]) =>
              target.transaction(async (tx) => {
                const value = (await fn(tx)) as T;
                if (state.failCommit) throw new Error('disk I/O error at commit');
                return value;
              })
          : Reflect.get(target, prop, receiver),
    });
}

async function adminKit(t: Parameters<typeof buildKit>[0], opts: Parameters<typeof buildKit>[1] = {}) {
  const kit = await buildKit(t, opts);
  const root = await kit.openSession(ROOT.email);
  const actor = await kit.actor(root.caller);
  return { kit, root, actor, user: (email: string) => kit.raw.findUserByEmail(email) as Promise<UserRecord> };
}

const adminRows = async (kit: Kit, action = 'admin.*') => (await kit.auditRows({ action })).reverse();

t.test('authorize: an admin token is a wire actor; another role is forbidden and audited; a bad token is unauthenticated', async (t) => {
  const { kit, root, actor } = await adminKit(t);
  t.same(actor, { name: `admin:${ROOT.email}`, userId: kit.users[ROOT.email]!.id, sessionId: root.id, ip: IP, mac: MAC, auditReads: true });

  const alice = await kit.openSession(ALICE.email);
  for (let i = 0; i < 2; i++) {
    await t.rejects(kit.actor(alice.caller, 'admin.user.disable'), { name: 'ServiceError', kind: 'forbidden', message: 'this command needs the admin role' });
  }
  const rows = await adminRows(kit);
  t.equal(rows.length, 1, 'repeats coalesced');
  t.match(rows[0], { action: 'admin.user.disable', outcome: 'denied', actor: `admin:${ALICE.email}`, email: ALICE.email, sessionId: alice.id });
  t.same(rows[0]!.detail, { reason: 'not-admin', role: 'user' });
  await t.rejects(kit.actor({ ...root.caller, token: 'x' }), refusal('unauthenticated'));
});

t.test('each change is audited with who did it and what changed', async (t) => {
  const { kit, actor, user } = await adminKit(t);
  const alice = await kit.openSession(ALICE.email);
  const bob = await kit.openSession(BOB.email);

  const carol = await kit.admin.addUser(actor, CAROL);
  t.match(carol, { email: CAROL.email, role: 'user', disabled: false });
  t.match(await kit.admin.disableUser(actor, ALICE.email), { sessionsEnded: 1, user: { disabled: true } });
  t.match(await kit.admin.enableUser(actor, ALICE.email), { disabled: false });
  t.match(await kit.admin.setRole(actor, BOB.email, 'admin'), { role: 'admin' });
  t.match(await kit.admin.resetPassword(actor, BOB.email, NEW_PASSWORD), { sessionsEnded: 1 });
  t.ok(await kit.hasher.verify((await user(BOB.email)).passwordHash, NEW_PASSWORD));
  const again = await kit.openSession(ALICE.email);
  t.equal((await kit.admin.revokeSession(actor, again.id)).id, again.id);
  await kit.openSession(ALICE.email);
  t.match(await kit.admin.revokeUserSessions(actor, ALICE.email), { ended: 1 });
  t.match(await kit.admin.deleteUser(actor, CAROL.email), { email: CAROL.email });
  t.equal(await user(CAROL.email), undefined);
  t.equal((await kit.raw.findSessionById(alice.id))!.revokeReason, 'account-disabled');
  t.equal((await kit.raw.findSessionById(bob.id))!.revokeReason, 'password-changed');

  const rows = await adminRows(kit);
  t.ok(rows.every((r) => r.outcome === 'success' && r.actor === `admin:${ROOT.email}` && r.sessionId === actor.sessionId && r.ip === IP));
  t.same(
    rows.map((r) => [r.action, r.email, r.detail]),
    [
      ['admin.user.add', CAROL.email, { role: 'user' }],
      ['admin.user.disable', ALICE.email, { sessionsEnded: 1 }],
      ['admin.user.enable', ALICE.email, null],
      ['admin.user.set_role', BOB.email, { from: 'user', to: 'admin' }],
      ['admin.user.reset_password', BOB.email, { sessionsEnded: 1 }],
      ['admin.session.revoke', ALICE.email, { target: again.id, targetMac: MAC, targetIp: IP }],
      ['admin.session.revoke_user', ALICE.email, { ended: 1 }],
      ['admin.user.delete', CAROL.email, { role: 'user' }],
    ],
  );
  t.notOk(JSON.stringify(rows).includes(NEW_PASSWORD), 'never the password');
});

t.test('a change and its audit row commit together: a failed commit leaves neither', async (t) => {
  const state = { failCommit: false };
  const { kit, actor, user } = await adminKit(t, { wrap: failingCommit(state) });
  const alice = await kit.openSession(ALICE.email);
  await kit.raw.setUserDisabled(kit.users[BOB.email]!.id, true);
  const before = { alice: await user(ALICE.email), bob: await user(BOB.email) };

  state.failCommit = true;
  const attempts: Array<[string, () => Promise<unknown>]> = [
    ['add', () => kit.admin.addUser(actor, CAROL)],
    ['disable', () => kit.admin.disableUser(actor, ALICE.email)],
    ['enable', () => kit.admin.enableUser(actor, BOB.email)],
    ['set role', () => kit.admin.setRole(actor, ALICE.email, 'admin')],
    ['reset password', () => kit.admin.resetPassword(actor, ALICE.email, NEW_PASSWORD)],
    ['revoke session', () => kit.admin.revokeSession(actor, alice.id)],
    ['revoke user sessions', () => kit.admin.revokeUserSessions(actor, ALICE.email)],
    ['delete', () => kit.admin.deleteUser(actor, ALICE.email)],
  ];
  for (const [what, attempt] of attempts) await t.rejects(attempt(), { message: 'disk I/O error at commit' }, what);

  t.equal(await user(CAROL.email), undefined);
  t.same(await user(ALICE.email), before.alice, 'alice unchanged: enabled, user, same password');
  t.same(await user(BOB.email), before.bob, 'bob still disabled');
  t.equal((await kit.raw.findSessionById(alice.id))!.revokedAt, null);
  t.same(await adminRows(kit), [], 'no audit row survived the rollback, and no failure was recorded for it');

  state.failCommit = false;
  await kit.admin.disableUser(actor, ALICE.email);
  t.same((await adminRows(kit)).map((r) => r.action), ['admin.user.disable'], 'the same change, committed, is audited');
});

t.test('refusals change nothing and are audited as failures with the reason', async (t) => {
  const { kit, actor } = await adminKit(t);
  const ended = await kit.openSession(ALICE.email);
  await kit.raw.revokeSession(ended.id, kit.clock.now, 'logout');
  const refusals: Array<[string, () => Promise<unknown>, Refusal]> = [
    ['unknown user', () => kit.admin.disableUser(actor, 'Nobody@Example.com'), refusal('not-found', { message: 'no user with email nobody@example.com' })],
    ['already enabled', () => kit.admin.enableUser(actor, ALICE.email), refusal('conflict')],
    ['duplicate', () => kit.admin.addUser(actor, { ...CAROL, email: ALICE.email }), { name: 'DuplicateUserError' }],
    ['bad email', () => kit.admin.addUser(actor, { ...CAROL, email: 'not-an-email' }), refusal('invalid', { message: 'email is not a valid address' })],
    ['unknown role', () => kit.admin.setRole(actor, ALICE.email, 'wizard'), refusal('invalid', { message: 'role must be one of user, admin' })],
    ['weak password', () => kit.admin.resetPassword(actor, ALICE.email, 'password'), refusal('invalid')],
    ['unknown session', () => kit.admin.revokeSession(actor, 4242), refusal('not-found')],
    ['ended session', () => kit.admin.revokeSession(actor, ended.id), refusal('conflict', { message: `session ${ended.id} had already ended (logout)` })],
  ];
  for (const [what, attempt, expected] of refusals) await t.rejects(attempt(), expected, what);

  const rows = await adminRows(kit);
  t.ok(rows.every((r) => r.outcome === 'failure' && r.actor === `admin:${ROOT.email}`), 'all failures, by the administrator');
  t.same(
    rows.map((r) => [r.action, r.email, r.detail?.reason, r.detail?.target ?? null]),
    [
      ['admin.user.disable', 'nobody@example.com', 'not-found', null],
      ['admin.user.enable', ALICE.email, 'conflict', null],
      ['admin.user.add', ALICE.email, 'conflict', null],
      ['admin.user.add', 'not-an-email', 'invalid', null],
      ['admin.user.set_role', ALICE.email, 'invalid', null],
      ['admin.user.reset_password', ALICE.email, 'invalid', null],
      ['admin.session.revoke', null, 'not-found', 4242],
      ['admin.session.revoke', null, 'conflict', ended.id],
    ],
  );
  t.equal(rows[0]!.detail?.message, 'no user with email nobody@example.com');
  t.same((await kit.raw.listUsers()).map((u) => [u.email, u.role, u.disabled]), [[ALICE.email, 'user', false], [BOB.email, 'user', false], [ROOT.email, 'admin', false]]);
});

t.test('adding accounts, changing roles and resetting passwords need a login within admin.reauthSeconds', async (t) => {
  const { kit, root, user } = await adminKit(t);
  kit.clock.now = T0 + 900 * SECOND;
  const actor = await kit.actor(root.caller);
  t.match(await kit.admin.setRole(actor, ALICE.email, 'admin'), { role: 'admin' }, 'at the limit: still recent');

  kit.clock.now += 1;
  const reauth = { name: 'ReauthRequired', kind: 'forbidden', message: 'log in again: this command needs a login within the last 15 minutes' };
  await t.rejects(kit.admin.addUser(actor, CAROL), reauth);
  await t.rejects(kit.admin.setRole(actor, ALICE.email, 'user'), reauth);
  await t.rejects(kit.admin.resetPassword(actor, ALICE.email, NEW_PASSWORD), reauth);
  t.equal(await user(CAROL.email), undefined);
  t.equal((await user(ALICE.email)).role, 'admin');
  t.match(await kit.admin.disableUser(actor, BOB.email), { user: { disabled: true } }, 'other changes do not need a recent login');

  kit.clock.now = T0 + 3600 * SECOND;
  const check = await kit.tokens.check({ ...root.caller, request: 'x' }, kit.log);
  t.equal(check.status, 'renew');
  const renewed = await kit.actor({ ...root.caller, token: (check as { token: string }).token });
  await t.rejects(kit.admin.addUser(renewed, CAROL), reauth, 'a renewal is not a login');
  t.match(await kit.admin.addUser(CLI, CAROL), { email: CAROL.email }, 'the CLI has no session to be recent');

  const denied = (await adminRows(kit)).filter((r) => r.outcome === 'denied');
  t.same(denied.map((r) => [r.action, r.email, r.detail?.reason]), [
    ['admin.user.add', CAROL.email, 'reauth-required'],
    ['admin.user.set_role', ALICE.email, 'reauth-required'],
    ['admin.user.reset_password', ALICE.email, 'reauth-required'],
    ['admin.user.add', CAROL.email, 'reauth-required'],
  ]);
});

t.test('a command in flight is checked again at commit: revoked, demoted, expired or no longer recent, it commits nothing', async (t) => {
  const { kit, root, actor, user } = await adminKit(t);
  const hash = (await user(ALICE.email)).passwordHash;

  // resetPassword hashes before its transaction: the administrator's state moves meanwhile.
  let pending = kit.admin.resetPassword(actor, ALICE.email, NEW_PASSWORD);
  kit.clock.now = T0 + 901 * SECOND;
  await t.rejects(pending, { name: 'ReauthRequired' }, 'the clock passed the recent-login limit during the hash');
  kit.clock.now = T0;

  const demoted = kit.admin.resetPassword(actor, ALICE.email, NEW_PASSWORD);
  await kit.raw.setUserRole(kit.users[ROOT.email]!.id, 'user');
  await t.rejects(demoted, refusal('forbidden', { message: 'this command needs the admin role' }), 'demoted meanwhile');
  await kit.raw.setUserRole(kit.users[ROOT.email]!.id, 'admin');

  pending = kit.admin.resetPassword(actor, ALICE.email, NEW_PASSWORD);
  await kit.raw.revokeSession(root.id, kit.clock.now, 'admin-revoked');
  await t.rejects(pending, refusal('unauthenticated'), 'the session was revoked meanwhile');
  t.equal((await user(ALICE.email)).passwordHash, hash, 'the password never changed');

  const fresh = await kit.openSession(ROOT.email, { mac: '00:00:00:00:00:07' });
  const later = await kit.actor(fresh.caller);
  kit.clock.now = T0 + 3600 * SECOND;
  await t.rejects(kit.admin.disableUser(later, ALICE.email), refusal('unauthenticated'), 'the session expired since it was authorized');
  t.equal((await user(ALICE.email)).disabled, false);
  t.same((await adminRows(kit)).map((r) => [r.action, r.outcome, r.detail?.reason]), [['admin.user.reset_password', 'denied', 'reauth-required']]);
});

t.test('over the wire an administrator cannot disable, demote or delete their own account; the CLI can', async (t) => {
  const { kit, actor, user } = await adminKit(t);
  await t.rejects(kit.admin.disableUser(actor, ROOT.email), refusal('conflict', { message: 'an administrator cannot disable their own account over the wire' }));
  await t.rejects(kit.admin.setRole(actor, ROOT.email, 'user'), refusal('conflict', { message: 'an administrator cannot demote their own account over the wire' }));
  await t.rejects(kit.admin.deleteUser(actor, ROOT.email), refusal('conflict', { message: 'an administrator cannot delete their own account over the wire' }));
  await kit.audit.flush(); // refusals are group-committed; the change below commits its own row at once
  t.match(await kit.admin.setRole(actor, ROOT.email, 'admin'), { role: 'admin' }, 'keeping the admin role is no demotion');
  t.match(await user(ROOT.email), { role: 'admin', disabled: false });
  t.same(
    (await adminRows(kit)).map((r) => [r.action, r.outcome, r.detail?.reason ?? null]),
    [
      ['admin.user.disable', 'failure', 'conflict'],
      ['admin.user.set_role', 'failure', 'conflict'],
      ['admin.user.delete', 'failure', 'conflict'],
      ['admin.user.set_role', 'success', null],
    ],
  );

  t.match(await kit.admin.setRole(CLI, ROOT.email, 'user'), { role: 'user' });
  t.match(await kit.admin.disableUser(CLI, ROOT.email), { user: { disabled: true } });
  const [last] = await kit.auditRows({ action: 'admin.*' });
  t.match(last, { action: 'admin.user.disable', actor: 'cli:root', sessionId: null, ip: null });
});

t.test('reads are audited on the wire, not from the CLI', async (t) => {
  const { kit, actor } = await adminKit(t);
  t.equal((await kit.admin.listUsers(actor)).length, 3);
  t.equal((await kit.admin.listUsers(CLI)).length, 3);
  t.match(await kit.admin.stats(actor), { activeSessions: 1, activeUsers: 1, sessionsPerUser: { [ROOT.email]: 1 } });
  const rows = await adminRows(kit);
  t.same(rows.map((r) => [r.action, r.actor, r.detail]), [
    ['admin.user.list', `admin:${ROOT.email}`, { count: 3 }],
    ['admin.stats', `admin:${ROOT.email}`, null],
  ]);
});

t.test("admin session lists and revocations show each session's known device, as session.list does", async (t) => {
  const { kit, root, actor } = await adminKit(t);
  const OTHER_MAC = '00:1a:2b:3c:4d:ff';
  const desk = await kit.openSession(ALICE.email, { device: 'laptop: cli' });
  await kit.devices.register(actor, ALICE.email, MAC, 'desk');
  const phone = await kit.login(ALICE, { mac: OTHER_MAC, device: 'phone: app' });
  await kit.mail.drain();

  const listed = await kit.admin.listSessions(actor, ALICE.email);
  t.match(listed.map(adminSessionView), [
    { id: desk.id, mac: MAC, device: 'laptop: cli', deviceName: 'desk', deviceRegistered: true },
    { id: phone.id, mac: OTHER_MAC, device: 'phone: app', deviceName: 'phone: app', deviceRegistered: false },
  ]);
  const own = await kit.sessions.list(phone.caller, kit.log);
  t.same(
    own.map((s) => [s.id, s.deviceName, s.deviceRegistered]),
    listed.map((s) => [s.id, s.deviceName, s.deviceRegistered]),
    'the operator sees the same in session.list',
  );

  // Devices are per operator: ROOT's session on the same MAC is not a known device of theirs.
  const rootView = (await kit.admin.listSessions(CLI)).map(adminSessionView).find((s) => s.id === root.id)!;
  t.notOk('deviceName' in rootView || 'deviceRegistered' in rootView, 'neither field for a MAC not known yet');

  t.match(adminSessionView(await kit.admin.revokeSession(actor, desk.id)), { id: desk.id, deviceName: 'desk', deviceRegistered: true }, 'revoke answers it too');
});
