import t from 'tap';
import type { HellwallClient } from '../../src/client/client.js';
import { disableUser, requireUser, resetPassword } from '../../src/services/users.js';
import { ALICE, MAC, startHarness, type Harness } from '../helpers/harness.js';

const BOB = { email: 'bob@example.com', phone: '+1 555 0199', password: 'another correct horse battery', role: 'user' };
const macOf = (i: number): string => `00:1a:2b:3c:4d:${i.toString(16).padStart(2, '0')}`;
const MIN = 60_000;

/** Logs Alice (or `user`) in from `mac`, optionally reporting a device; returns the token. */
async function loginFrom(h: Harness, client: HellwallClient, mac: string, device?: string, user = ALICE): Promise<string> {
  const passcode = await h.requestPasscode(client, user, mac);
  const res = await client.login({ email: user.email, phone: user.phone, password: user.password, passcode, mac, ...(device && { device }) });
  if (res.status !== 'ok') throw new Error(`login failed: ${JSON.stringify(res)}`);
  return res.token;
}

const check = (client: HellwallClient, token: string, mac: string) => client.check({ token, mac, request: 'inventory.read' });

t.test('a sixth login ends the oldest session; five stay authorized and the eviction is logged', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const tokens: string[] = [];
  for (let i = 1; i <= 5; i++) {
    tokens.push(await loginFrom(h, client, macOf(i), `device ${i}`));
    h.clock.advance(1000);
  }
  // The first token is in the store's session cache now: eviction must reach it there too.
  t.equal((await check(client, tokens[0]!, macOf(1))).status, 'authorized');
  t.equal(h.logs.find({ event: 'session.evicted' }).length, 0, 'five sessions evict nothing');

  tokens.push(await loginFrom(h, client, macOf(6), 'device 6'));
  t.equal((await check(client, tokens[0]!, macOf(1))).status, 'unauthorized', 'the oldest session has ended');
  for (let i = 1; i < 6; i++) t.equal((await check(client, tokens[i]!, macOf(i + 1))).status, 'authorized', `session ${i + 1} is still authorized`);
  const evicted = h.logs.find({ event: 'session.evicted' });
  t.equal(evicted.length, 1, 'one eviction logged');
  t.match(evicted[0], { level: 30, userId: 1, sessionId: 1, mac: macOf(1), maxPerUser: 5 });
  t.equal((await h.app.store.findSessionById(1))?.revokeReason, 'evicted');

  const list = await client.send({ code: 6, token: tokens[3]!, mac: macOf(4) });
  t.equal(list.status, 'ok');
  const sessions = (list as unknown as { sessions: Array<Record<string, unknown>> }).sessions;
  t.equal(sessions.length, 5, 'five active sessions listed');
  t.same(sessions.map((s) => s.device), ['device 2', 'device 3', 'device 4', 'device 5', 'device 6'], 'oldest first, with device info');
  t.same(sessions.map((s) => s.current), [false, false, true, false, false], 'only the caller is current');
  t.match(sessions[0], { id: 2, mac: macOf(2), ip: '127.0.0.1', createdAt: Number, lastSeenAt: Number });
  t.notOk(JSON.stringify(list).includes('Awfer_hellwall_'), 'no token is shown');
});

t.test('session.list leaves out device for a login that sent none, and other operators\' sessions', async (t) => {
  const h = await startHarness(t, { users: [ALICE, BOB] });
  const client = await h.connect();
  const alice = await loginFrom(h, client, MAC);
  await loginFrom(h, client, macOf(9), 'bob laptop', BOB);
  const list = await client.listSessions({ token: alice, mac: MAC });
  if (list.status !== 'ok') return t.fail(JSON.stringify(list));
  t.equal(list.sessions.length, 1);
  t.notOk('device' in list.sessions[0]!, 'absent, not null');
  t.equal(list.sessions[0]!.current, true);
});

t.test('the cap is sessions.maxPerUser, counted per operator', async (t) => {
  const h = await startHarness(t, { users: [ALICE, BOB], config: { sessions: { maxPerUser: 2 } } });
  const client = await h.connect();
  const bob = await loginFrom(h, client, macOf(20), undefined, BOB);
  const a1 = await loginFrom(h, client, macOf(1));
  const a2 = await loginFrom(h, client, macOf(2));
  t.equal((await check(client, a1, macOf(1))).status, 'authorized', 'two sessions fit');
  const a3 = await loginFrom(h, client, macOf(3));
  t.equal((await check(client, a1, macOf(1))).status, 'unauthorized', 'the third evicts the first');
  t.equal((await check(client, a2, macOf(2))).status, 'authorized');
  t.equal((await check(client, a3, macOf(3))).status, 'authorized');
  t.equal((await check(client, bob, macOf(20))).status, 'authorized', "another operator's session is not counted");
});

t.test('sessions that can no longer be used do not count towards the cap', async (t) => {
  const h = await startHarness(t, { config: { sessions: { maxPerUser: 2 } } });
  const client = await h.connect();
  const a1 = await loginFrom(h, client, macOf(1));
  const a2 = await loginFrom(h, client, macOf(2));
  t.equal((await client.logout({ token: a1, mac: macOf(1) })).status, 'ok');
  await loginFrom(h, client, macOf(3));
  t.equal((await check(client, a2, macOf(2))).status, 'authorized', 'a logged-out session made room');
  t.equal(h.logs.find({ event: 'session.evicted' }).length, 0);
});

t.test('session.logout ends only the caller\'s session', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const a = await loginFrom(h, client, macOf(1));
  const b = await loginFrom(h, client, macOf(2));
  t.equal((await check(client, a, macOf(1))).status, 'authorized', 'cached before the logout');
  const res = await client.send({ code: 4, token: a, mac: macOf(1) });
  t.match(res, { code: 4, status: 'ok' });
  t.equal((await check(client, a, macOf(1))).status, 'unauthorized', 'the logged-out token is refused');
  t.equal((await check(client, b, macOf(2))).status, 'authorized', 'the other session goes on');
  t.equal((await h.app.store.findSessionById(1))?.revokeReason, 'logout');
  const again = await client.logout({ token: a, mac: macOf(1) });
  t.match(again, { status: 'error', error: 'E_UNAUTHENTICATED' }, 'a second logout with the ended token is refused');
  t.equal(h.logs.find({ event: 'session.logout' }).length, 1);
});

t.test('session.logout_all ends every session of the operator, and only theirs', async (t) => {
  const h = await startHarness(t, { users: [ALICE, BOB] });
  const client = await h.connect();
  const tokens = [await loginFrom(h, client, macOf(1)), await loginFrom(h, client, macOf(2)), await loginFrom(h, client, macOf(3))];
  const bob = await loginFrom(h, client, macOf(9), undefined, BOB);
  for (let i = 0; i < 3; i++) t.equal((await check(client, tokens[i]!, macOf(i + 1))).status, 'authorized');
  const res = await client.send({ code: 5, token: tokens[1]!, mac: macOf(2) });
  t.match(res, { code: 5, status: 'ok', ended: 3 });
  for (let i = 0; i < 3; i++) t.equal((await check(client, tokens[i]!, macOf(i + 1))).status, 'unauthorized', `token ${i + 1} has ended`);
  t.equal((await check(client, bob, macOf(9))).status, 'authorized', "another operator's session goes on");
  t.equal((await h.app.store.findSessionById(1))?.revokeReason, 'logout-all');
});

t.test('a token that would not check authorized gets E_UNAUTHENTICATED and changes nothing', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const token = await loginFrom(h, client, MAC);
  const other = await loginFrom(h, client, macOf(2));
  const bogus = `Awfer_hellwall_${'A'.repeat(43)}`;
  const refused = [
    { token: bogus, mac: MAC, why: 'unknown token' },
    { token: 'not-a-token', mac: MAC, why: 'malformed token' },
    { token, mac: macOf(7), why: 'another MAC' },
  ];
  for (const code of [4, 5, 6]) {
    for (const r of refused) {
      const res = await client.send({ code, token: r.token, mac: r.mac });
      t.match(res, { code, status: 'error', error: 'E_UNAUTHENTICATED', message: 'not authenticated' }, `code ${code}: ${r.why}`);
    }
  }
  const fromElsewhere = await h.connect({ localAddress: '127.0.0.2' });
  t.match(await fromElsewhere.listSessions({ token, mac: MAC }), { error: 'E_UNAUTHENTICATED' }, 'another address');
  t.equal((await check(client, token, MAC)).status, 'authorized', 'nothing was ended');
  t.equal((await check(client, other, macOf(2))).status, 'authorized');

  // Expired but renewable: these commands do not renew; token.check still does afterwards.
  h.clock.advance(61 * MIN);
  for (const code of [4, 5, 6]) t.match(await client.send({ code, token, mac: MAC }), { error: 'E_UNAUTHENTICATED' }, `code ${code}: expired token`);
  const renewed = await check(client, token, MAC);
  t.equal(renewed.status, 'renew', 'the session was left as it was');
  if (renewed.status !== 'renew') return;
  // The rotated-out token is refused without reuse detection; the new one works.
  t.match(await client.listSessions({ token, mac: MAC }), { error: 'E_UNAUTHENTICATED' }, 'rotated-out token');
  const list = await client.listSessions({ token: renewed.token, mac: MAC });
  t.match(list, { status: 'ok', sessions: [{ current: true }] }, 'the other session (expired, idle-renewable) is listed too');
  t.equal(list.status === 'ok' && list.sessions.length, 2);
  t.ok(h.logs.find({ event: 'session.auth', outcome: 'unauthenticated' }).length >= 10, 'refusals are logged with their reason');
});

t.test('E_UNAUTHENTICATED counts as a failed token check for the address limit', async (t) => {
  const h = await startHarness(t, { config: { limits: { ipFailedChecksPerMinute: 3 } } });
  const client = await h.connect();
  const token = await loginFrom(h, client, MAC);
  const bogus = `Awfer_hellwall_${'B'.repeat(43)}`;
  for (let i = 0; i < 3; i++) t.match(await client.send({ code: 6, token: bogus, mac: MAC }), { error: 'E_UNAUTHENTICATED' });
  t.match(await client.send({ code: 6, token: bogus, mac: MAC }), { error: 'E_RATE_LIMITED', retryAfterSeconds: Number });
  t.match(await client.send({ code: 3, token: bogus, mac: MAC, request: 'x' }), { error: 'E_RATE_LIMITED' }, 'token checks share the limit');
  t.match(await client.logout({ token, mac: MAC }), { error: 'E_RATE_LIMITED' }, 'even with a good token while limited');
  h.clock.advance(MIN);
  t.match(await client.logout({ token, mac: MAC }), { status: 'ok' });
});

t.test('sessions end on password change and on account disable; the cache never serves them', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const deps = { store: h.app.store, hasher: h.app.hasher, clock: h.clock.fn };
  const first = await loginFrom(h, client, MAC);
  t.equal((await check(client, first, MAC)).status, 'authorized', 'cached');
  await resetPassword(deps, ALICE.email, 'a brand new passphrase here');
  t.match(await client.listSessions({ token: first, mac: MAC }), { error: 'E_UNAUTHENTICATED' }, 'ended by the password change');
  const user = { ...ALICE, password: 'a brand new passphrase here' };
  const second = await loginFrom(h, client, MAC, undefined, user);
  t.equal((await client.listSessions({ token: second, mac: MAC })).status, 'ok', 'cached again');
  await h.app.store.transaction(async (tx) => disableUser(tx, h.clock.now, await requireUser(tx, ALICE.email)));
  t.match(await client.listSessions({ token: second, mac: MAC }), { error: 'E_UNAUTHENTICATED' }, 'ended by disabling the account');
  t.equal((await check(client, second, MAC)).status, 'unauthorized');
});
