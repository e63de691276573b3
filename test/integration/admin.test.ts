import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { ADMIN_CODES, type HellwallClient } from '../../src/client/client.js';
import { loadProtocol } from '../../src/protocol/registry.js';
import { ALICE, MAC, startHarness, type Harness } from '../helpers/harness.js';

// [P-4.11] session.revoke and [P-4.12] the admin commands, over real TLS and a real SQLite file.
// The harness holds every response to the contract (schema and index.json's errors) on its own.

const ROOT = { email: 'root@example.com', phone: '+1 555 0111', password: 'root horse battery staple', role: 'admin' };
const ROOT2 = { email: 'root2@example.com', phone: '+1 555 0112', password: 'second root horse battery', role: 'admin' };
const BOB = { email: 'bob@example.com', phone: '+1 555 0199', password: 'another correct horse battery', role: 'user' };
const ROOT_MAC = '00:1a:2b:3c:4d:aa';
const BOB_MAC = '00:1a:2b:3c:4d:bb';
const macOf = (i: number): string => `00:1a:2b:3c:4d:${i.toString(16).padStart(2, '0')}`;
const HOUR = 3_600_000;
const NAMES = new Map([...loadProtocol().commands.values()].map((c) => [c.code, c.name]));

interface Auth {
  token: string;
  mac: string;
}
// Responses are checked against their schemas by the harness; the tests read them loosely.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Res = { status: string; [field: string]: any };

async function loginAs(h: Harness, client: HellwallClient, user: typeof ALICE, mac: string): Promise<Auth> {
  const res = await h.login(client, user, mac);
  return { token: res.token, mac };
}

const send = (client: HellwallClient, message: Record<string, unknown>): Promise<Res> => client.send<Res>(message);
const check = async (client: HellwallClient, auth: Auth): Promise<Res> => client.send<Res>({ code: 3, ...auth, request: 'inventory.read' });

/** Everything an admin command could change: accounts (with password hashes), open sessions, passcodes. */
async function snapshot(h: Harness): Promise<unknown> {
  return {
    users: await h.app.store.listUsers(),
    sessions: await h.app.store.listAllOpenSessions(),
    passcodes: await h.app.store.countPendingPasscodes(h.clock.now),
  };
}

async function sessionIdOf(h: Harness, email: string, mac: string): Promise<number> {
  const s = (await h.app.store.listAllOpenSessions()).find((r) => r.userEmail === email && r.mac === mac);
  if (!s) throw new Error(`no open session of ${email} on ${mac}`);
  return s.id;
}

t.test('the client names the admin commands with the codes of protocol/index.json', async (t) => {
  const fromIndex = [...NAMES].filter(([, name]) => name.startsWith('admin.')).map(([code, name]) => [name, code]);
  t.same(Object.fromEntries(fromIndex), ADMIN_CODES);
  t.equal(fromIndex.length, 16);
});

t.test('an administrator runs the account and session commands over the wire, and each has its effect', async (t) => {
  const h = await startHarness(t, { users: [ALICE, ROOT, BOB] });
  const client = await h.connect();
  const root = await loginAs(h, client, ROOT, ROOT_MAC);
  const rootSession = await sessionIdOf(h, ROOT.email, ROOT_MAC);
  const a1 = await loginAs(h, client, ALICE, macOf(1));
  const a2 = await loginAs(h, client, ALICE, macOf(2));
  const bob = await loginAs(h, client, BOB, BOB_MAC);

  // admin.user.add: the account exists, and its operator logs in with the password given.
  const carol = { email: 'carol@example.com', phone: '+1 (555) 0123', password: 'carol horse battery staple', role: 'user' };
  const added = await send(client, { code: 8, ...root, ...carol, email: 'Carol@Example.com' });
  t.match(added, { code: 8, status: 'ok', user: { id: Number, email: carol.email, phone: '+15550123', role: 'user', disabled: false, createdAt: h.clock.now } });
  t.same(Object.keys(added.user).sort(), ['createdAt', 'disabled', 'email', 'id', 'phone', 'role'], 'never a password hash');
  const dave = await client.admin('admin.user.add', root, { email: 'dave@example.com', phone: '+1 555 0124', password: 'dave horse battery staple' });
  t.match(dave, { status: 'ok', user: { email: 'dave@example.com', role: 'user' } }, 'role defaults to user');
  const carolAuth = await loginAs(h, client, carol, macOf(9));

  // admin.user.list and admin.user.show
  const list = await send(client, { code: 9, ...root });
  t.same(
    list.users.map((u: { email: string }) => u.email),
    [ALICE.email, ROOT.email, BOB.email, carol.email, 'dave@example.com'],
    'every account, by id',
  );
  t.notOk(JSON.stringify(list).includes((await h.app.store.findUserByEmail(ALICE.email))!.passwordHash), 'no password hash');
  t.match(await send(client, { code: 10, ...root, email: 'ALICE@example.com' }), {
    status: 'ok',
    user: { email: ALICE.email, role: 'user', disabled: false },
    activeSessions: 2,
  });

  // admin.session.list, for everyone and for one operator
  const all = await send(client, { code: 16, ...root });
  t.same(
    all.sessions.map((s: { email: string }) => s.email),
    [ROOT.email, ALICE.email, ALICE.email, BOB.email, carol.email],
    'every active session, oldest first',
  );
  t.notOk(JSON.stringify(all).includes('Awfer_hellwall_'), 'never a token');
  const alices = await send(client, { code: 16, ...root, email: ALICE.email });
  t.equal(alices.sessions.length, 2);
  t.match(alices.sessions[1], {
    id: await sessionIdOf(h, ALICE.email, macOf(2)),
    email: ALICE.email,
    mac: macOf(2),
    ip: '127.0.0.1',
    createdAt: h.clock.now,
    lastSeenAt: h.clock.now,
    expiresAt: h.clock.now + HOUR,
    renewableUntil: Number,
  });

  // admin.session.revoke: that session's token is refused, the operator's other one goes on.
  const a2Id = alices.sessions[1].id as number;
  t.match(await send(client, { code: 17, ...root, sessionId: a2Id }), { code: 17, status: 'ok', session: { id: a2Id, email: ALICE.email, mac: macOf(2) } });
  t.equal((await check(client, a2)).status, 'unauthorized', 'the revoked session is refused');
  t.equal((await check(client, a1)).status, 'authorized', 'the other session goes on');
  t.equal((await h.app.store.findSessionById(a2Id))?.revokeReason, 'admin-revoked');

  // admin.user.set_role: the next token check sees the new role, and so do the admin commands.
  t.match(await send(client, { code: 13, ...root, email: BOB.email, role: 'admin' }), { status: 'ok', user: { email: BOB.email, role: 'admin' } });
  t.match(await check(client, bob), { status: 'authorized', user: { email: BOB.email, role: 'admin' } });
  t.match(await send(client, { code: 9, ...bob }), { status: 'ok' }, 'a promoted operator may use the admin commands at once');
  t.match(await send(client, { code: 13, ...root, email: BOB.email, role: 'user' }), { status: 'ok', user: { role: 'user' } });
  t.match(await send(client, { code: 9, ...bob }), { status: 'error', error: 'E_FORBIDDEN' }, 'a demotion takes effect at once');
  t.match(await check(client, bob), { status: 'authorized', user: { role: 'user' } }, 'and the session is kept');

  // admin.user.disable and admin.user.enable
  t.match(await send(client, { code: 11, ...root, email: ALICE.email }), { status: 'ok', user: { email: ALICE.email, disabled: true }, sessionsEnded: 1 });
  t.equal((await check(client, a1)).status, 'unauthorized', "a disabled account's token is refused");
  t.match(await client.listSessions(a1), { error: 'E_UNAUTHENTICATED' });
  t.equal((await h.app.store.findUserByEmail(ALICE.email))?.disabled, true);
  t.match(await send(client, { code: 12, ...root, email: ALICE.email }), { status: 'ok', user: { email: ALICE.email, disabled: false } });
  t.equal((await check(client, a1)).status, 'unauthorized', 'sessions stay ended after enable');
  const a3 = await loginAs(h, client, ALICE, macOf(3));

  // admin.user.reset_password: every session ends; the new password logs in.
  const newPassword = 'a brand new passphrase here';
  t.match(await send(client, { code: 14, ...root, email: ALICE.email, password: newPassword }), { status: 'ok', user: { email: ALICE.email }, sessionsEnded: 1 });
  t.match(await client.listSessions(a3), { error: 'E_UNAUTHENTICATED' }, 'the session ended with the reset');
  t.equal((await h.app.store.findSessionById(await sessionIdOf(h, BOB.email, BOB_MAC)))?.revokedAt, null, "another operator's session is untouched");
  const alice2 = { ...ALICE, password: newPassword };
  const a4 = await loginAs(h, client, alice2, macOf(4));
  const a5 = await loginAs(h, client, alice2, macOf(5));

  // admin.session.revoke_user
  t.match(await send(client, { code: 18, ...root, email: ALICE.email }), { status: 'ok', ended: 2 });
  for (const a of [a4, a5]) t.equal((await check(client, a)).status, 'unauthorized', `session on ${a.mac} ended`);
  t.equal((await check(client, bob)).status, 'authorized', "another operator's session goes on");
  t.match(await send(client, { code: 18, ...root, email: ALICE.email }), { status: 'ok', ended: 0 }, 'none left to end');

  // admin.user.delete
  t.match(await send(client, { code: 15, ...root, email: carol.email }), { status: 'ok', user: { email: carol.email } });
  t.equal(await h.app.store.findUserByEmail(carol.email), undefined, 'the account is gone');
  t.equal((await check(client, carolAuth)).status, 'unauthorized', 'with its session');
  t.match(await send(client, { code: 10, ...root, email: carol.email }), { status: 'error', error: 'E_NOT_FOUND' });

  // Each success is in the audit trail, with the administrator as actor and the account concerned.
  const rows = await h.auditRows({ action: 'admin.*', outcome: 'success' });
  const expected: Array<[string, string | null]> = [
    ['admin.user.add', carol.email],
    ['admin.user.list', null],
    ['admin.user.show', ALICE.email],
    ['admin.session.list', ALICE.email],
    ['admin.session.revoke', ALICE.email],
    ['admin.user.set_role', BOB.email],
    ['admin.user.disable', ALICE.email],
    ['admin.user.enable', ALICE.email],
    ['admin.user.reset_password', ALICE.email],
    ['admin.session.revoke_user', ALICE.email],
    ['admin.user.delete', carol.email],
  ];
  for (const [action, email] of expected) {
    const row = rows.find((r) => r.action === action && r.email === email && r.actor === `admin:${ROOT.email}`);
    t.match(row, { outcome: 'success', sessionId: rootSession, ip: '127.0.0.1', mac: ROOT_MAC }, `${action} is audited`);
  }
  t.match(rows.find((r) => r.action === 'admin.user.list' && r.actor === `admin:${BOB.email}`), { mac: BOB_MAC }, 'so is the promoted operator\'s list');
  t.same(
    rows.filter((r) => r.action === 'admin.user.set_role').map((r) => r.detail),
    [
      { from: 'admin', to: 'user' },
      { from: 'user', to: 'admin' },
    ],
    'set_role records the change, newest first',
  );
  t.match(rows.find((r) => r.action === 'admin.user.disable'), { detail: { sessionsEnded: 1 } });
  t.match(rows.find((r) => r.action === 'admin.session.revoke'), { detail: { target: a2Id, targetMac: macOf(2) } });
});

t.test('admin.stats counts active and expired sessions, pending passcodes and sessions per operator', async (t) => {
  const h = await startHarness(t, { users: [ALICE, ROOT, BOB] });
  const client = await h.connect();
  await loginAs(h, client, BOB, BOB_MAC);
  h.clock.advance(25 * HOUR); // Bob's session is now past the idle limit: open, but expired
  const root = await loginAs(h, client, ROOT, ROOT_MAC);
  await loginAs(h, client, ALICE, macOf(1));
  await loginAs(h, client, ALICE, macOf(2));
  t.equal((await client.logout(await loginAs(h, client, ALICE, macOf(3)))).status, 'ok', 'an ended session counts nowhere');
  await h.requestPasscode(client, BOB, BOB_MAC);
  const res = await send(client, { code: 19, ...root });
  t.same(res, {
    id: res.id,
    code: 19,
    status: 'ok',
    activeSessions: 3,
    activeUsers: 2,
    expiredSessions: 1,
    pendingPasscodes: 1,
    sessionsPerUser: [
      { email: ALICE.email, sessions: 2 },
      { email: ROOT.email, sessions: 1 },
    ],
  });
  const reads = await h.auditRows({ action: 'admin.stats' });
  t.equal(reads.length, 1);
  t.match(reads[0], { outcome: 'success', actor: `admin:${ROOT.email}` }, 'the read is audited');
});

t.test('admin.audit.query filters by email, action, prefix, outcome and time, and pages on with nextBeforeId', async (t) => {
  const h = await startHarness(t, { users: [ALICE, ROOT, BOB] });
  const client = await h.connect();
  const root = await loginAs(h, client, ROOT, ROOT_MAC);
  const q = (filters: Record<string, unknown>): Promise<Res> => send(client, { code: 20, ...root, ...filters });
  h.clock.advance(1000);
  const t1 = h.clock.now;
  for (let i = 0; i < 5; i++) {
    t.equal((await send(client, { code: 8, ...root, email: `u${i}@example.com`, phone: '+1 555 0150', password: 'a long enough passphrase' })).status, 'ok');
    h.clock.advance(1000);
  }
  const t2 = h.clock.now;
  t.match(await send(client, { code: 10, ...root, email: 'ghost@example.com' }), { error: 'E_NOT_FOUND' });
  t.match(await send(client, { code: 11, ...root, email: BOB.email }), { status: 'ok' });
  h.clock.advance(1000);
  const alice = await loginAs(h, client, ALICE, MAC);
  t.match(await send(client, { code: 9, ...alice }), { error: 'E_FORBIDDEN' });

  // One action, newest first, every field the row has.
  const adds = await q({ action: 'admin.user.add' });
  t.same(
    adds.events.map((e: { email: string }) => e.email),
    ['u4@example.com', 'u3@example.com', 'u2@example.com', 'u1@example.com', 'u0@example.com'],
    'newest first',
  );
  t.notOk('nextBeforeId' in adds, 'a page that is not full is the last');
  t.match(adds.events[0], {
    id: Number,
    at: t1 + 4000,
    action: 'admin.user.add',
    outcome: 'success',
    userId: (await h.app.store.findUserByEmail('u4@example.com'))!.id,
    email: 'u4@example.com',
    actor: `admin:${ROOT.email}`,
    ip: '127.0.0.1',
    mac: ROOT_MAC,
    sessionId: await sessionIdOf(h, ROOT.email, ROOT_MAC),
    detail: String,
  });
  t.same(JSON.parse(adds.events[0].detail as string), { role: 'user' }, 'detail is a JSON-encoded flat object');

  // A prefix: every admin action, and only those.
  const admin = await q({ action: 'admin.*', limit: 1000 });
  const actions = new Set(admin.events.map((e: { action: string }) => e.action));
  t.same([...actions].sort(), ['admin.audit.query', 'admin.user.add', 'admin.user.disable', 'admin.user.list', 'admin.user.show']);
  t.match(
    admin.events.find((e: { action: string }) => e.action === 'admin.user.list'),
    { outcome: 'denied', actor: `admin:${ALICE.email}`, detail: '{"reason":"not-admin","role":"user"}' },
    "a plain operator's attempt",
  );
  const logins = await q({ action: 'login' });
  t.same(logins.events.map((e: { email: string; outcome: string }) => [e.email, e.outcome]), [[ALICE.email, 'success'], [ROOT.email, 'success']]);

  // By email (case-insensitively), by outcome, by time, and all at once.
  const aboutBob = await q({ email: 'BOB@example.com' });
  t.ok(aboutBob.events.length > 0 && aboutBob.events.every((e: { email: string }) => e.email === BOB.email), 'only events about Bob');
  t.ok(aboutBob.events.some((e: { action: string }) => e.action === 'admin.user.disable'));
  const failures = await q({ outcome: 'failure' });
  t.same(failures.events.map((e: { action: string; email: string }) => [e.action, e.email]), [['admin.user.show', 'ghost@example.com']]);
  t.match(JSON.parse(failures.events[0].detail as string), { reason: 'not-found' });
  t.same((await q({ outcome: 'denied' })).events.map((e: { action: string }) => e.action), ['admin.user.list']);
  const window = await q({ since: t1, until: t2 });
  t.same(window.events.map((e: { action: string }) => e.action), Array(5).fill('admin.user.add'), 'since is inclusive, until exclusive');
  t.ok(window.events.every((e: { at: number }) => e.at >= t1 && e.at < t2));
  t.same((await q({ since: t2, action: 'admin.user.add' })).events, [], 'nothing added since');
  t.same((await q({ action: 'admin.*', outcome: 'failure', email: 'ghost@example.com' })).events.length, 1, 'filters combine');
  t.same((await q({ action: 'admin.*', outcome: 'success', email: 'ghost@example.com' })).events.length, 0, 'with AND');

  // An empty range is refused as invalid, and audited as a failure.
  t.match(await q({ since: t2, until: t1 }), { status: 'error', error: 'E_INVALID', message: /since must be before until/ });
  t.match(await q({ since: t1, until: t1 }), { status: 'error', error: 'E_INVALID' });
  t.equal((await h.auditRows({ action: 'admin.audit.query', outcome: 'failure' })).length, 2);

  // Paging: full pages carry nextBeforeId; the pages together are the whole answer, in order, even
  // when new events are recorded between pages.
  const whole = (await q({ action: 'admin.user.*', limit: 1000 })).events.map((e: { id: number }) => e.id);
  t.equal(whole.length, 8);
  const paged: number[] = [];
  let pages = 0;
  let beforeId: number | undefined;
  for (;;) {
    const page = await q({ action: 'admin.user.*', limit: 3, ...(beforeId !== undefined && { beforeId }) });
    pages++;
    paged.push(...page.events.map((e: { id: number }) => e.id));
    if (page.nextBeforeId === undefined) {
      t.ok(page.events.length < 3, 'the last page is not full');
      break;
    }
    t.equal(page.events.length, 3);
    t.equal(page.nextBeforeId, page.events[2].id, "nextBeforeId is the page's last id");
    beforeId = page.nextBeforeId;
    if (pages === 1) t.equal((await send(client, { code: 8, ...root, email: 'late@example.com', phone: '+1 555 0151', password: 'a long enough passphrase' })).status, 'ok');
    if (pages > 10) return t.fail('paging does not end');
  }
  t.same(paged, whole, 'the pages are the whole answer');
  t.equal(pages, 3);
  t.equal((await q({ action: 'admin.user.*', limit: 1 })).events[0].email, 'late@example.com', 'the new event is on a new first page');
  const exact = await q({ action: 'admin.user.add', limit: 6 });
  t.equal(exact.nextBeforeId, exact.events[5].id, 'a full last page still points on');
  t.same((await q({ action: 'admin.user.add', limit: 6, beforeId: exact.nextBeforeId })).events, [], 'to an empty page');
});

t.test("every admin command with a plain operator's token answers E_FORBIDDEN, is audited as denied, and changes nothing", async (t) => {
  const h = await startHarness(t, { users: [ALICE, ROOT, BOB] });
  const client = await h.connect();
  const alice = await loginAs(h, client, ALICE, MAC);
  const aliceSession = await sessionIdOf(h, ALICE.email, MAC);
  const bob = await loginAs(h, client, BOB, BOB_MAC);
  await h.requestPasscode(client, BOB, BOB_MAC);
  const requests: Array<Record<string, unknown> & { code: number }> = [
    { code: 8, email: 'eve@example.com', phone: '+1 555 0166', role: 'admin', password: 'eve horse battery staple' },
    { code: 9 },
    { code: 10, email: BOB.email },
    { code: 11, email: BOB.email },
    { code: 12, email: BOB.email },
    { code: 13, email: ALICE.email, role: 'admin' },
    { code: 14, email: BOB.email, password: 'a takeover passphrase here' },
    { code: 15, email: BOB.email },
    { code: 16 },
    { code: 17, sessionId: await sessionIdOf(h, BOB.email, BOB_MAC) },
    { code: 18, email: BOB.email },
    { code: 19 },
    { code: 20, limit: 10 },
    { code: 32, email: BOB.email },
    { code: 33, email: BOB.email, device: BOB_MAC },
    { code: 34, email: BOB.email, device: BOB_MAC },
  ];
  t.same(requests.map((r) => r.code), Object.values(ADMIN_CODES).sort((a, b) => a - b), 'every admin command');
  const before = await snapshot(h);
  for (const r of requests) {
    t.match(await send(client, { ...r, ...alice }), { code: r.code, status: 'error', error: 'E_FORBIDDEN', message: 'this command needs the admin role' }, String(NAMES.get(r.code)));
  }
  t.same(await snapshot(h), before, 'no account, session or passcode changed');
  t.match(await check(client, alice), { status: 'authorized', user: { role: 'user' } }, 'Alice is still a plain operator');
  t.equal((await check(client, bob)).status, 'authorized', "Bob's session goes on");

  const denied = await h.auditRows({ outcome: 'denied' });
  t.equal(denied.length, requests.length, 'one denied event per attempt');
  for (const r of requests) {
    t.match(
      denied.find((d) => d.action === NAMES.get(r.code)),
      { actor: `admin:${ALICE.email}`, sessionId: aliceSession, ip: '127.0.0.1', mac: MAC, detail: { reason: 'not-admin', role: 'user' } },
      `${NAMES.get(r.code)} is audited as denied`,
    );
  }
  t.same(await h.auditRows({ action: 'admin.*', outcome: 'success' }), [], 'no admin action succeeded');
  t.same(h.logs.find({ outcome: 'denied', reason: 'not-admin' }).length, requests.length, 'and each is logged');
});

t.test("session.revoke ends one of the caller's own sessions, and never another operator's", async (t) => {
  const h = await startHarness(t, { users: [ALICE, BOB] });
  const client = await h.connect();
  const a1 = await loginAs(h, client, ALICE, macOf(1));
  const a2 = await loginAs(h, client, ALICE, macOf(2));
  const bob = await loginAs(h, client, BOB, BOB_MAC);
  const a1Id = await sessionIdOf(h, ALICE.email, macOf(1));
  const a2Id = await sessionIdOf(h, ALICE.email, macOf(2));
  const bobId = await sessionIdOf(h, BOB.email, BOB_MAC);
  const listed = await client.listSessions(a1);
  t.same(listed.status === 'ok' && listed.sessions.map((s) => s.id), [a1Id, a2Id], 'the ids session.list shows');

  const before = await snapshot(h);
  const notFound = { code: 7, status: 'error', error: 'E_NOT_FOUND', message: 'no such active session of yours' };
  t.match(await send(client, { code: 7, ...a1, sessionId: bobId }), notFound, "another operator's session");
  t.match(await send(client, { code: 7, ...a1, sessionId: 9999 }), notFound, 'no such session: the same answer');
  t.same(await snapshot(h), before, 'nothing changed');
  t.equal((await check(client, bob)).status, 'authorized', "Bob's session is still authorized");
  const denied = await h.auditRows({ action: 'session.revoke', outcome: 'denied' });
  t.equal(denied.length, 1);
  t.match(denied[0], { userId: (await h.app.store.findUserByEmail(ALICE.email))!.id, email: ALICE.email, sessionId: a1Id, detail: { target: bobId, reason: 'another-operator' } });
  const failed = await h.auditRows({ action: 'session.revoke', outcome: 'failure' });
  t.equal(failed.length, 1);
  t.match(failed[0], { email: ALICE.email, detail: { target: 9999, reason: 'no-such-session' } });

  // Her own other session ends; hers goes on.
  t.match(await client.revokeSession({ ...a1, sessionId: a2Id }), { code: 7, status: 'ok' });
  t.equal((await check(client, a2)).status, 'unauthorized', 'the revoked session is refused');
  t.equal((await check(client, a1)).status, 'authorized', "the caller's session goes on");
  t.equal((await h.app.store.findSessionById(a2Id))?.revokeReason, 'revoked-by-owner');
  const revoked = await h.auditRows({ action: 'session.revoke', outcome: 'success' });
  t.equal(revoked.length, 1);
  t.match(revoked[0], { email: ALICE.email, sessionId: a1Id, detail: { target: a2Id, targetMac: macOf(2) } });
  t.match(await send(client, { code: 7, ...a1, sessionId: a2Id }), notFound, 'an ended session is not found either');
  t.match((await h.auditRows({ action: 'session.revoke', outcome: 'failure' }))[0], { detail: { target: a2Id, reason: 'not-active' } });

  // A bad token, then her own current session.
  t.match(await send(client, { code: 7, token: `Awfer_hellwall_${'Q'.repeat(43)}`, mac: macOf(1), sessionId: a1Id }), { error: 'E_UNAUTHENTICATED' });
  t.match(await send(client, { code: 7, ...a1, sessionId: 0 }), { error: 'E_SCHEMA' });
  t.match(await send(client, { code: 7, ...a1, sessionId: a1Id }), { status: 'ok' }, "the caller's own session may be named");
  t.match(await client.listSessions(a1), { error: 'E_UNAUTHENTICATED' });
  t.equal((await check(client, bob)).status, 'authorized');
});

t.test('accounts and sessions that do not exist answer E_NOT_FOUND, audited as failures', async (t) => {
  const h = await startHarness(t, { users: [ALICE, ROOT] });
  const client = await h.connect();
  const root = await loginAs(h, client, ROOT, ROOT_MAC);
  await loginAs(h, client, ALICE, MAC);
  const ghost = 'ghost@example.com';
  const requests: Array<Record<string, unknown> & { code: number }> = [
    { code: 10, email: ghost },
    { code: 11, email: ghost },
    { code: 12, email: ghost },
    { code: 13, email: ghost, role: 'user' },
    { code: 14, email: ghost, password: 'a brand new passphrase here' },
    { code: 15, email: ghost },
    { code: 16, email: ghost },
    { code: 18, email: ghost },
  ];
  const before = await snapshot(h);
  for (const r of requests) {
    t.match(await send(client, { ...r, ...root }), { code: r.code, status: 'error', error: 'E_NOT_FOUND', message: `no user with email ${ghost}` }, String(NAMES.get(r.code)));
  }
  t.match(await send(client, { code: 17, ...root, sessionId: 424242 }), { status: 'error', error: 'E_NOT_FOUND', message: 'no session with id 424242' });
  t.same(await snapshot(h), before, 'nothing changed');
  const failures = await h.auditRows({ outcome: 'failure' });
  for (const r of requests) {
    t.match(failures.find((f) => f.action === NAMES.get(r.code)), { email: ghost, actor: `admin:${ROOT.email}`, detail: { reason: 'not-found' } }, `${NAMES.get(r.code)} failure audited`);
  }
  t.match(failures.find((f) => f.action === 'admin.session.revoke'), { email: null, detail: { target: 424242, reason: 'not-found' } });
  t.equal(failures.length, requests.length + 1);
});

t.test('conflicts: a duplicate account, disabling or enabling twice, an ended session, and an administrator\'s own account', async (t) => {
  const h = await startHarness(t, { users: [ALICE, ROOT, BOB, ROOT2] });
  const client = await h.connect();
  const root = await loginAs(h, client, ROOT, ROOT_MAC);
  const root2 = await loginAs(h, client, ROOT2, macOf(0x22));
  await loginAs(h, client, BOB, BOB_MAC);
  const bobId = await sessionIdOf(h, BOB.email, BOB_MAC);
  const conflict = { status: 'error', error: 'E_CONFLICT' };

  let before = await snapshot(h);
  t.match(await send(client, { code: 8, ...root, email: 'Alice@Example.com', phone: '+1 555 0177', password: 'a different passphrase' }), {
    ...conflict,
    message: `a user with email ${ALICE.email} already exists`,
  });
  t.match(await send(client, { code: 12, ...root, email: ALICE.email }), { ...conflict, message: `${ALICE.email} is not disabled` });
  t.same(await snapshot(h), before, 'the duplicate and the enable changed nothing');

  t.match(await send(client, { code: 11, ...root, email: BOB.email }), { status: 'ok', sessionsEnded: 1 });
  before = await snapshot(h);
  t.match(await send(client, { code: 11, ...root, email: BOB.email }), { ...conflict, message: `${BOB.email} is already disabled` });
  t.match(await send(client, { code: 17, ...root, sessionId: bobId }), { ...conflict, message: /had already ended/ }, 'a session already ended');

  // Over the wire an administrator cannot lock themselves out.
  t.match(await send(client, { code: 11, ...root, email: ROOT.email }), { ...conflict, message: /cannot disable their own account/ });
  t.match(await send(client, { code: 15, ...root, email: ROOT.email }), { ...conflict, message: /cannot delete their own account/ });
  t.match(await send(client, { code: 13, ...root, email: ROOT.email, role: 'user' }), { ...conflict, message: /cannot demote their own account/ });
  t.same(await snapshot(h), before, 'none of it changed anything');
  t.match(await send(client, { code: 10, ...root, email: ROOT.email }), { status: 'ok', user: { role: 'admin', disabled: false } });
  t.match(await send(client, { code: 13, ...root, email: ROOT.email, role: 'admin' }), { status: 'ok', user: { role: 'admin' } }, 'keeping the admin role is no demotion');

  const failures = await h.auditRows({ outcome: 'failure' });
  t.equal(failures.length, 7, 'each conflict is audited');
  t.ok(failures.every((f) => f.detail?.reason === 'conflict'));
  t.match(failures.find((f) => f.action === 'admin.user.delete'), { email: ROOT.email, actor: `admin:${ROOT.email}` });

  // Another administrator may do it; a disabled administrator's token no longer authenticates.
  t.match(await send(client, { code: 11, ...root2, email: ROOT.email }), { status: 'ok', user: { email: ROOT.email, disabled: true } });
  t.match(await send(client, { code: 9, ...root }), { status: 'error', error: 'E_UNAUTHENTICATED', message: 'not authenticated' });
  t.match(await send(client, { code: 9, ...root2 }), { status: 'ok' });
});

t.test('E_INVALID: a password the policy refuses, an unknown role, a phone without enough digits; nothing changes', async (t) => {
  const h = await startHarness(t, { users: [ALICE, ROOT, BOB] });
  const client = await h.connect();
  const root = await loginAs(h, client, ROOT, ROOT_MAC);
  const alice = await loginAs(h, client, ALICE, MAC);
  const before = await snapshot(h);
  const eve = { email: 'eve@example.com', phone: '+1 555 0166', password: 'eve horse battery staple' };
  const invalid = (message: RegExp) => ({ status: 'error', error: 'E_INVALID', message });
  t.match(await send(client, { code: 8, ...root, ...eve, password: 'short' }), invalid(/at least 8 characters/));
  t.match(await send(client, { code: 8, ...root, ...eve, password: 'password' }), invalid(/commonly used/));
  t.match(await send(client, { code: 8, ...root, ...eve, password: 'eve@example.com' }), invalid(/email address/));
  t.match(await send(client, { code: 8, ...root, ...eve, role: 'wizard' }), invalid(/role must be one of user, admin/));
  t.match(await send(client, { code: 8, ...root, ...eve, phone: '(12)' }), invalid(/phone must be 4 to 20 digits/));
  t.match(await send(client, { code: 13, ...root, email: BOB.email, role: 'wizard' }), invalid(/role must be one of/));
  t.match(await send(client, { code: 14, ...root, email: ALICE.email, password: 'short' }), invalid(/at least 8 characters/));
  t.same(await snapshot(h), before, 'no account, password, role or session changed');
  t.equal((await check(client, alice)).status, 'authorized', "Alice's session survives the refused reset");
  const failures = await h.auditRows({ outcome: 'failure' });
  t.equal(failures.length, 7);
  t.ok(failures.every((f) => f.detail?.reason === 'invalid'), 'each audited as invalid');

  // Malformed rather than unknown: the schema refuses it first.
  t.match(await send(client, { code: 13, ...root, email: BOB.email, role: 'Wizard!' }), { error: 'E_SCHEMA', message: /role/ });
  t.match(await send(client, { code: 20, ...root, limit: 0 }), { error: 'E_SCHEMA', message: /limit/ });
  t.match(await send(client, { code: 20, ...root, action: 'admin.**' }), { error: 'E_SCHEMA', message: /action/ });
});

t.test('roles the policy declares may be given; the policy neither grants nor withholds the admin commands', async (t) => {
  // A policy that lets `auditor` and `user` read the inventory and says nothing of `admin`.
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'hellwall-policy-')), 'policy.json');
  writeFileSync(file, JSON.stringify({ roles: ['user', 'admin', 'auditor'], rules: [{ requests: ['inventory.*', 'admin.*'], roles: ['user', 'auditor'] }] }));
  const h = await startHarness(t, { users: [ALICE, ROOT], config: { policy: { file } } });
  const client = await h.connect();
  const root = await loginAs(h, client, ROOT, ROOT_MAC);
  const alice = await loginAs(h, client, ALICE, MAC);
  t.match(await send(client, { code: 9, ...root }), { status: 'ok' }, 'the admin commands work for an admin the policy does not mention');
  t.match(await send(client, { code: 13, ...root, email: ALICE.email, role: 'auditor' }), { status: 'ok', user: { role: 'auditor' } });
  t.match(await check(client, alice), { status: 'authorized', user: { role: 'auditor' } });
  t.match(await send(client, { code: 9, ...alice }), { status: 'error', error: 'E_FORBIDDEN' }, 'a policy rule naming admin.* grants no admin command');
  t.match(
    await send(client, { code: 8, ...root, email: 'eve@example.com', phone: '+1 555 0166', role: 'auditor', password: 'eve horse battery staple' }),
    { status: 'ok', user: { role: 'auditor' } },
  );
});

t.test('an admin command with a token that does not authenticate is E_UNAUTHENTICATED and counts for the address limit', async (t) => {
  const h = await startHarness(t, { users: [ALICE, ROOT], config: { limits: { ipFailedChecksPerMinute: 3 } } });
  const client = await h.connect();
  const root = await loginAs(h, client, ROOT, ROOT_MAC);
  const unauthenticated = { status: 'error', error: 'E_UNAUTHENTICATED', message: 'not authenticated' };
  t.match(await send(client, { code: 9, token: `Awfer_hellwall_${'Z'.repeat(43)}`, mac: ROOT_MAC }), unauthenticated, 'an unknown token');
  t.match(await send(client, { code: 19, token: root.token, mac: macOf(7) }), unauthenticated, 'another MAC');
  t.match(await send(client, { code: 15, token: 'junk', mac: ROOT_MAC, email: ALICE.email }), unauthenticated, 'not a token at all');
  t.match(await send(client, { code: 9, ...root }), { status: 'error', error: 'E_RATE_LIMITED', retryAfterSeconds: Number }, 'the address limit applies');
  t.ok(await h.app.store.findUserByEmail(ALICE.email), 'nothing was deleted');
  h.clock.advance(60_000);
  t.match(await send(client, { code: 9, ...root }), { status: 'ok' });
  h.clock.advance(2 * HOUR);
  t.match(await send(client, { code: 9, ...root }), unauthenticated, 'an expired token is not renewed by an admin command');
});

t.test('passwords sent with admin.user.add and admin.user.reset_password are never audited, logged or stored', async (t) => {
  const h = await startHarness(t, { users: [ALICE, ROOT] });
  const client = await h.connect();
  const root = await loginAs(h, client, ROOT, ROOT_MAC);
  const alice = await loginAs(h, client, ALICE, MAC);
  const secrets = {
    added: 'zebra-Quokka-7731-added',
    reset: 'yak-Narwhal-9921-reset',
    weak: 'Qx7w!k',
    duplicate: 'walrus-Okapi-5512-duplicate',
    forbidden: 'ibex-Tapir-3318-forbidden',
    schema: 'lynx-Dhole-6604-schema',
  };
  const eve = { email: 'eve@example.com', phone: '+1 555 0166', role: 'user' };
  t.match(await send(client, { code: 8, ...root, ...eve, password: secrets.added }), { status: 'ok' });
  t.match(await send(client, { code: 14, ...root, email: eve.email, password: secrets.reset }), { status: 'ok' });
  t.match(await send(client, { code: 14, ...root, email: eve.email, password: secrets.weak }), { error: 'E_INVALID' });
  t.match(await send(client, { code: 8, ...root, ...eve, password: secrets.duplicate }), { error: 'E_CONFLICT' });
  t.match(await send(client, { code: 8, ...alice, ...eve, email: 'mallory@example.com', password: secrets.forbidden }), { error: 'E_FORBIDDEN' });
  t.match(await send(client, { code: 14, ...root, email: eve.email, password: secrets.schema, extra: 1 }), { error: 'E_SCHEMA' });
  // The reset took: Eve logs in with the new password.
  await loginAs(h, client, { ...eve, password: secrets.reset }, macOf(5));

  await client.close();
  const rows = JSON.stringify(await h.auditRows());
  t.ok(rows.includes('admin.user.reset_password') && rows.includes('admin.user.add'), 'the audit rows were read');
  t.ok(h.logs.find({ error: 'E_INVALID' }).length > 0 && h.logs.find({ error: 'E_CONFLICT' }).length > 0, 'the refusals were logged');
  const files = readdirSync(h.dataDir, { recursive: true, encoding: 'utf8' }).map((f) => path.join(h.dataDir, f)).filter((f) => statSync(f).isFile());
  t.ok(files.some((f) => f.endsWith('.db')), 'the database file was read');
  for (const [what, secret] of Object.entries(secrets)) {
    t.notOk(rows.includes(secret), `the ${what} password is in no audit row`);
    t.notOk(h.logs.text.includes(secret), `the ${what} password is in no log line`);
    for (const f of files) t.notOk(readFileSync(f).includes(secret), `the ${what} password is not in ${path.basename(f)}`);
  }
});
