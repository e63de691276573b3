import t from 'tap';
import { ALICE, MAC, startHarness } from '../helpers/harness.js';

// [P-4.13] password.change over the real wire: the operator's own password, with the current one.

const NEW = 'a brand new passphrase for spring';
const OTHER_MAC = '00:1a:2b:3c:4d:77';

t.test('an operator changes their own password: other sessions end, this one goes on, the owner is told', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const here = await h.login(client);
  const there = await h.login(client, ALICE, OTHER_MAC);
  const mails = h.smtp.messages.length;
  t.match(await client.changePassword({ token: here.token, mac: MAC, password: ALICE.password, newPassword: NEW }), { status: 'ok', sessionsEnded: 1 });
  t.equal((await client.check({ token: here.token, mac: MAC, request: 'x.read' })).status, 'authorized', 'the caller stays logged in');
  t.equal((await client.check({ token: there.token, mac: OTHER_MAC, request: 'x.read' })).status, 'unauthorized', 'the other session ended');
  await h.app.mail.drain();
  const mail = h.smtp.messages.slice(mails).find((m) => m.to.includes(ALICE.email));
  t.match(mail?.raw, /Subject: Your Hellwall password was changed/, 'the owner is told by mail');
  t.match(await client.requestPasscode({ email: ALICE.email, password: ALICE.password, mac: MAC }), { status: 'ok' });
  t.equal((await h.auditRows({ action: 'passcode.request', outcome: 'failure' }))[0]?.detail?.reason, 'bad-password', 'the old password no longer works');
  t.equal((await h.login(client, { ...ALICE, password: NEW })).status, 'ok', 'the new one does');
  const rows = await h.auditRows({ action: 'password.change' });
  t.match(rows[0], { outcome: 'success', email: ALICE.email, detail: { sessionsEnded: 1 } });
  t.notOk(JSON.stringify(rows).includes(NEW), 'never the password');
});

t.test('a wrong current password, a weak new one, and a bad token each change nothing', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const { token } = await h.login(client);
  t.match(await client.changePassword({ token, mac: MAC, password: 'not my password', newPassword: NEW }), { status: 'error', error: 'E_AUTH_FAILED' });
  t.match(await client.changePassword({ token, mac: MAC, password: ALICE.password, newPassword: 'password1' }), { status: 'error', error: 'E_INVALID' });
  t.match(await client.changePassword({ token: token.slice(0, -2) + 'xx', mac: MAC, password: ALICE.password, newPassword: NEW }), { status: 'error', error: 'E_UNAUTHENTICATED' });
  t.match(await client.send({ code: 21, token, mac: MAC, password: ALICE.password }), { status: 'error', error: 'E_SCHEMA' }, 'newPassword is required');
  t.equal((await h.login(client)).status, 'ok', 'the old password still works');
  t.match((await h.auditRows({ action: 'password.change', outcome: 'failure' }))[0], { detail: { reason: 'wrong-password' } });
});

t.test('guessing the current password with a stolen token runs into the login limits', async (t) => {
  const h = await startHarness(t, { config: { limits: { freeFailures: 3 } } });
  const client = await h.connect();
  const { token } = await h.login(client);
  const answers = await Promise.all(
    Array.from({ length: 8 }, (_, i) => client.changePassword({ token, mac: MAC, password: `guess number ${i}`, newPassword: NEW })),
  );
  t.equal(answers.filter((a) => a.status === 'error' && a.error === 'E_AUTH_FAILED').length, 3, 'three guesses');
  t.equal(answers.filter((a) => a.status === 'error' && a.error === 'E_RATE_LIMITED').length, 5, 'then refused');
});
