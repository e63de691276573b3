import net from 'node:net';
import t, { type Test } from 'tap';
import { ALICE, MAC, startHarness, type Harness } from '../helpers/harness.js';
import { ConsoleClient, ROOT } from '../helpers/console-client.js';
import { CONSOLE_CSP } from '../../src/console/console-server.js';

async function consoleHarness(t: Test, config: Parameters<typeof startHarness>[1] = {}): Promise<{ h: Harness; c: ConsoleClient }> {
  const h = await startHarness(t, { users: [ALICE, ROOT], ...config });
  t.ok(h.consolePort > 0, 'the console listens');
  return { h, c: new ConsoleClient(h.consolePort, h.ca) };
}

/** The raw answer to `text` sent over plain TCP, until the server closes. */
function plain(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect(port, '127.0.0.1', () => s.write(text));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    s.on('error', reject);
  });
}

t.test('a plain-HTTP request on the console port is answered 400 and the connection closed', async (t) => {
  const { h } = await consoleHarness(t);
  const answer = await plain(h.consolePort, 'GET /overview HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  t.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/);
  t.match(answer, /speaks HTTPS only/);
  t.notMatch(answer, /Set-Cookie|<html/i, 'no page, no cookie');
});

t.test('an administrator logs in with password, mailed passcode, and gets a strict session cookie', async (t) => {
  const { h, c } = await consoleHarness(t);
  const first = await c.get('/overview');
  t.equal(first.status, 303, 'no session: to the login');
  t.equal(first.headers.location, '/login');
  const done = await c.login(h);
  t.equal(done.status, 303);
  t.equal(done.headers.location, '/overview');
  const session = done.setCookies.find((l) => l.startsWith('__Host-hw_session='));
  t.ok(session, 'a session cookie');
  t.match(session!, /; Path=\//);
  t.match(session!, /; HttpOnly/);
  t.match(session!, /; Secure/);
  t.match(session!, /; SameSite=Strict/);
  t.notMatch(session!, /Max-Age|Expires/, 'a browser-session cookie');
  t.ok(done.setCookies.some((l) => /^__Host-hw_login=;/.test(l)), 'the pending login cookie is cleared');

  const overview = await c.get('/overview');
  t.equal(overview.status, 200);
  t.match(overview.body, /Active sessions/);
  t.match(overview.body, /<svg[^>]*role="img"/, 'the chart');
  t.equal(overview.headers['content-security-policy'], CONSOLE_CSP);
  t.match(CONSOLE_CSP, /script-src 'self'/);
  t.notMatch(CONSOLE_CSP, /unsafe-inline|unsafe-eval/);
  t.equal(overview.headers['x-content-type-options'], 'nosniff');
  t.equal(overview.headers['x-frame-options'], 'DENY');
  t.equal(overview.headers['cache-control'], 'no-store');
  t.match(overview.headers['strict-transport-security'], /max-age=/);
  t.notMatch(overview.body, /<script>|<style|style=|onclick=|onsubmit=/i, 'no inline script or style');

  const rows = await h.auditRows();
  t.match(rows.find((r) => r.action === 'admin.console.login'), { outcome: 'success', actor: `console:${ROOT.email}`, email: ROOT.email });
  t.match(rows.find((r) => r.action === 'login' && r.outcome === 'success'), { email: ROOT.email, detail: { device: 'Hellwall admin console' } });
  t.match(rows.find((r) => r.action === 'admin.stats'), { outcome: 'success', actor: `console:${ROOT.email}` }, 'the page view is audited with the console as its source');
  const user = (await h.app.store.findUserByEmail(ROOT.email))!;
  const [s] = await h.app.store.listOpenSessions(user.id);
  t.match(s?.mac, /^02:/, 'the session is bound to the browser\'s own device id');
});

t.test('no password, passcode or token ever appears in a page or a URL', async (t) => {
  const { h, c } = await consoleHarness(t);
  const { passcode } = await c.requestPasscode(h, ROOT);
  const step2 = await c.get('/login/passcode');
  t.notMatch(step2.body, ROOT.password);
  const done = await c.post('/login/passcode', { passcode, _csrf: ConsoleClient.csrf(step2) });
  t.notMatch(String(done.headers.location), /passcode|password|token/i);
  for (const path of ['/overview', '/users', `/user?email=${ROOT.email}`, '/sessions', '/audit', '/maintenance']) {
    const page = await c.get(path);
    t.equal(page.status, 200, path);
    t.notOk(page.body.includes(ROOT.password), `${path}: no password`);
    t.notOk(page.body.includes(passcode), `${path}: no passcode`);
    t.notMatch(page.body, /passwordHash|"token"/, `${path}: no hash or token`);
  }
  const csv = await c.get('/audit.csv');
  t.notOk(csv.body.includes(ROOT.password) || csv.body.includes(passcode), 'nor in the export');
});

t.test('an operator without the admin role is refused, and the session the login opened is ended', async (t) => {
  const { h, c } = await consoleHarness(t);
  const res = await c.login(h, ALICE);
  t.equal(res.status, 403);
  t.match(res.body, /admin role only/);
  t.notOk(res.setCookies.some((l) => l.startsWith('__Host-hw_session=') && !l.startsWith('__Host-hw_session=;')), 'no console session');
  const alice = (await h.app.store.findUserByEmail(ALICE.email))!;
  t.strictSame(await h.app.store.listOpenSessions(alice.id), [], 'no session left open');
  const rows = await h.auditRows();
  t.match(rows.find((r) => r.action === 'admin.console.login'), { outcome: 'denied', detail: { reason: 'not-admin' } });
  t.ok(rows.find((r) => r.action === 'session.logout'), 'the session was logged out');
  t.equal((await c.get('/overview')).status, 303, 'and the console stays shut');
});

t.test('a wrong passcode fails like on the wire, saying nothing about which factor', async (t) => {
  const { h, c } = await consoleHarness(t);
  await c.requestPasscode(h, ROOT);
  const page = await c.get('/login/passcode');
  const res = await c.post('/login/passcode', { passcode: '000000', _csrf: ConsoleClient.csrf(page) });
  t.equal(res.status, 401);
  t.match(res.body, /Login failed/);
  t.match((await h.auditRows()).find((r) => r.action === 'login'), { outcome: 'failure', email: ROOT.email });
});

t.test('changes need the session\'s CSRF token and this origin; destructive ones are confirmed first', async (t) => {
  const { h, c } = await consoleHarness(t);
  await c.login(h);
  const userPage = await c.get(`/user?email=${encodeURIComponent(ALICE.email)}`);
  const csrf = ConsoleClient.csrf(userPage);
  const disabled = async () => (await h.app.store.findUserByEmail(ALICE.email))!.disabled;

  t.equal((await c.post('/user/disable', { email: ALICE.email, confirm: 'yes' })).status, 403, 'no token');
  t.equal((await c.post('/user/disable', { email: ALICE.email, confirm: 'yes', _csrf: 'forged' })).status, 403, 'a wrong token');
  t.equal((await c.post('/user/disable', { email: ALICE.email, confirm: 'yes', _csrf: csrf }, { origin: 'https://evil.example' })).status, 403, 'another origin');
  t.equal((await c.post('/user/disable', { email: ALICE.email, confirm: 'yes', _csrf: csrf }, { 'sec-fetch-site': 'cross-site' })).status, 403, 'a cross-site fetch');
  const other = new ConsoleClient(h.consolePort, h.ca);
  await other.login(h);
  t.equal((await other.post('/user/disable', { email: ALICE.email, confirm: 'yes', _csrf: csrf })).status, 403, 'another session\'s token');
  t.equal(await disabled(), false, 'nothing was done');

  const ask = await c.post('/user/disable', { email: ALICE.email, _csrf: csrf });
  t.equal(ask.status, 200);
  t.match(ask.body, /Please confirm/);
  t.match(ask.body, /name="confirm" value="yes"/);
  t.equal(await disabled(), false, 'not before confirmation');

  const done = await c.post('/user/disable', { email: ALICE.email, _csrf: csrf, confirm: 'yes' });
  t.match(done.body, /Disabled alice@example.com/);
  t.equal(await disabled(), true);
  t.match((await h.auditRows({ action: 'admin.user.disable' }))[0], { outcome: 'success', actor: `console:${ROOT.email}`, email: ALICE.email });
});

t.test('user text is shown as text: an email holding <script> cannot run', async (t) => {
  const { h, c } = await consoleHarness(t);
  const evil = '<script>alert(1)</script>@example.com';
  await h.app.addUser({ email: evil, phone: '+1 555 0111', role: 'user', password: 'an evil but long password' });
  await c.login(h);
  for (const path of ['/users', `/user?email=${encodeURIComponent(evil)}`, `/audit?email=${encodeURIComponent(evil)}`]) {
    const page = await c.get(path);
    t.notOk(page.body.includes('<script>alert(1)'), `${path}: not as markup`);
  }
  t.match((await c.get('/users')).body, /&lt;script&gt;alert\(1\)&lt;\/script&gt;@example.com/);
});

t.test("sessions and the user page show each session's known device; the user page lists the operator's devices", async (t) => {
  const { h, c } = await consoleHarness(t);
  const evil = '<script>x</script>';
  const OTHER_MAC = '00:1a:2b:3c:4d:77';
  const cli = { name: 'cli:test', auditReads: false };
  await h.app.services.devices.register(cli, ALICE.email, MAC, evil);
  await h.app.services.devices.register(cli, ALICE.email, OTHER_MAC, 'spare laptop');
  await h.login(await h.connect());
  await h.app.mail.drain();
  await c.login(h);

  const registeredAt = new Date(h.clock.now).toISOString();
  const row = (body: string, mac: string) => new RegExp(`<tr><td>${mac}</td>.*?</tr>`, 's').exec(body)?.[0] ?? '';
  for (const path of ['/sessions', `/user?email=${encodeURIComponent(ALICE.email)}`]) {
    const page = await c.get(path);
    t.equal(page.status, 200, path);
    t.notOk(page.body.includes(evil), `${path}: the device name is not markup`);
    t.match(page.body, /<th scope="col">Device name<\/th><th scope="col">Registered<\/th>/, `${path}: the session table has the device columns`);
    t.match(page.body, /<td>00:1a:2b:3c:4d:5e<\/td><td>-<\/td><td>&lt;script&gt;x&lt;\/script&gt;<\/td><td>yes<\/td>/, `${path}: the session's device name, as text, and registered`);
  }

  const user = (await c.get(`/user?email=${encodeURIComponent(ALICE.email)}`)).body;
  t.match(user, /<h2 id="devices">Devices<\/h2>\s*<table><thead><tr><th scope="col">MAC<\/th><th scope="col">Name<\/th><th scope="col">Registered<\/th><th scope="col">First seen<\/th><th scope="col">Last seen<\/th>/);
  const used = row(user, MAC);
  t.match(used, /<td>&lt;script&gt;x&lt;\/script&gt;<\/td>/, 'the device used, by its name as text');
  t.match(used, `<td>yes (cli:test, <time datetime="${registeredAt}">`);
  t.equal([...used.matchAll(/<time datetime="(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)">/g)].length, 3, 'registered, first and last seen as ISO-8601');
  const spare = row(user, OTHER_MAC);
  t.match(spare, /<td>spare laptop<\/td><td>yes \(cli:test, /, 'a registered device never used is listed too');
  t.match(spare, /<td>-<\/td><td>-<\/td><\/tr>$/, 'with no first or last use');
  const rootPage = (await c.get(`/user?email=${encodeURIComponent(ROOT.email)}`)).body;
  t.match(row(rootPage, '02:[0-9a-f:]+'), /<td>Hellwall admin console<\/td><td>no<\/td>/, "the console's own browser is a known, unregistered device");
  t.equal((await h.auditRows({ action: 'admin.user.devices' })).length, 0, 'the page view is audited once, as admin.user.show');
});

t.test('a session ends when idle, when its Hellwall session is revoked, and on logout', async (t) => {
  const { h, c } = await consoleHarness(t);
  await c.login(h);
  h.clock.advance(h.app.config.console.idleSeconds * 1000 - 1000);
  t.equal((await c.get('/users')).status, 200, 'just inside the idle time');
  h.clock.advance(h.app.config.console.idleSeconds * 1000);
  const idle = await c.get('/users');
  t.equal(idle.status, 303);
  t.equal(idle.headers.location, '/login?ended=1');

  await c.login(h);
  const cli = { name: 'cli:test', auditReads: false };
  await h.app.services.admin.revokeUserSessions(cli, ROOT.email);
  t.equal((await c.get('/users')).headers.location, '/login?ended=1', 'revoked elsewhere: out at the next click');

  await c.login(h);
  const page = await c.get('/overview');
  const out = await c.post('/logout', { _csrf: ConsoleClient.csrf(page) });
  t.equal(out.headers.location, '/login');
  t.equal((await c.get('/overview')).headers.location, '/login');
  const root = (await h.app.store.findUserByEmail(ROOT.email))!;
  t.strictSame(await h.app.store.listOpenSessions(root.id), [], 'the Hellwall session ended with it');
});

t.test('console logins count against the same limits as the wire', async (t) => {
  const { h, c } = await consoleHarness(t, { config: { limits: { ipPasscodeRequestsPerMinute: 2 } } });
  const wire = await h.connect();
  await wire.requestPasscode({ email: ALICE.email, password: ALICE.password, mac: MAC });
  const form = await c.get('/login');
  const csrf = ConsoleClient.csrf(form);
  const attempt = () => c.post('/login', { email: ROOT.email, phone: ROOT.phone, password: ROOT.password, _csrf: csrf });
  t.equal((await attempt()).status, 303, 'the second request of the minute');
  const third = await attempt();
  t.equal(third.status, 429, 'the third, whichever the transport, is refused');
  t.match(third.body, /Too many attempts/);
  t.match((await h.auditRows({ action: 'passcode.request', outcome: 'denied' }))[0], { detail: { reason: 'rate-limited' } });
});

t.test('sessions: filter by operator and address, end one, end all of an operator', async (t) => {
  const { h, c } = await consoleHarness(t);
  const wire = await h.connect();
  await h.login(wire);
  await h.login(await h.connect());
  await c.login(h);
  const listed = await c.get(`/sessions?email=${encodeURIComponent(ALICE.email)}&ip=127.0.`);
  t.match(listed.body, /2 active session\(s\)/);
  t.match((await c.get('/sessions?ip=10.')).body, /0 active session\(s\)/);
  const alice = (await h.app.store.findUserByEmail(ALICE.email))!;
  const [first] = await h.app.store.listOpenSessions(alice.id);
  const csrf = ConsoleClient.csrf(listed);
  const one = await c.post('/sessions/revoke', { id: String(first!.id), confirm: 'yes', _csrf: csrf });
  t.match(one.body, new RegExp(`Ended session ${first!.id} of alice`));
  t.equal((await h.app.store.findSessionById(first!.id))?.revokeReason, 'admin-revoked');
  const all = await c.post('/sessions/revoke-user', { email: ALICE.email, confirm: 'yes', _csrf: csrf });
  t.match(all.body, /Ended 1 session\(s\) of alice/);
  t.strictSame(await h.app.store.listOpenSessions(alice.id), []);
  t.match((await h.auditRows({ action: 'admin.session.revoke_user' }))[0], { actor: `console:${ROOT.email}`, detail: { ended: 1 } });
});

t.test('users: add, set role, reset password, enable, delete, each through the AdminService', async (t) => {
  const { h, c } = await consoleHarness(t);
  await c.login(h);
  const csrf = ConsoleClient.csrf(await c.get('/users'));
  const added = await c.post('/users/add', { email: 'bob@example.com', phone: '+1 555 0102', role: 'user', password: 'bob has a long password', _csrf: csrf });
  t.match(added.body, /Added bob@example.com \(user\)/);
  t.notOk(added.body.includes('bob has a long password'), 'the password is not shown back');
  t.match((await c.post('/users/add', { email: 'bob@example.com', phone: '+1 555 0102', role: 'user', password: 'bob has a long password', _csrf: csrf })).body, /class="notice error"/, 'a duplicate is refused with the service\'s message');
  t.match((await c.post('/user/role', { email: 'bob@example.com', role: 'admin', confirm: 'yes', _csrf: csrf })).body, /now has role admin/);
  t.match((await c.post('/user/reset-password', { email: 'bob@example.com', password: 'another long password', _csrf: csrf })).body, /Form refused/, 'the confirmation box is required');
  t.match((await c.post('/user/reset-password', { email: 'bob@example.com', password: 'another long password', confirm: 'yes', _csrf: csrf })).body, /New password set/);
  const bob = (await h.app.store.findUserByEmail('bob@example.com'))!;
  t.equal(bob.role, 'admin');
  t.ok(await h.app.hasher.verify(bob.passwordHash, 'another long password'));
  t.match((await c.post('/user/delete', { email: 'bob@example.com', confirm: 'yes', _csrf: csrf })).body, /Deleted bob@example.com/);
  t.equal(await h.app.store.findUserByEmail('bob@example.com'), undefined);
  t.match((await c.post('/user/delete', { email: ROOT.email, confirm: 'yes', _csrf: csrf })).body, /cannot delete their own account/, 'not oneself');
  const actions = (await h.auditRows({ actor: `console:${ROOT.email}` })).map((r) => `${r.action}:${r.outcome}`);
  for (const a of ['admin.user.add:success', 'admin.user.add:failure', 'admin.user.set_role:success', 'admin.user.reset_password:success', 'admin.user.delete:success', 'admin.user.delete:failure']) {
    t.ok(actions.includes(a), a);
  }
});

t.test('audit: filters, paging and a CSV export that spreadsheets cannot run', async (t) => {
  const { h, c } = await consoleHarness(t);
  await h.app.store.appendAudit([{ at: h.clock.now - 1000, action: 'login', outcome: 'failure', email: '=HYPERLINK("x")@example.com', detail: { reason: 'password' } }]);
  for (let i = 0; i < 60; i++) await h.app.store.appendAudit([{ at: h.clock.now - 500, action: 'token.renew', outcome: 'success', email: ALICE.email }]);
  await c.login(h);
  const page = await c.get('/audit?action=token.renew');
  t.equal((page.body.match(/<tr><td>\d+<\/td>/g) ?? []).length, 50, 'a page of 50');
  const older = /href="\/audit\?([^"]+)" rel="next"/.exec(page.body);
  t.ok(older, 'a link to older rows');
  const next = await c.get(`/audit?${older![1]!.replace(/&amp;/g, '&')}`);
  t.equal((next.body.match(/<tr><td>\d+<\/td>/g) ?? []).length, 10, 'the rest');
  t.match((await c.get('/audit?outcome=failure&action=login')).body, /HYPERLINK/);
  t.match((await c.get('/audit?since=bad')).body, /must be a date and time/);
  await c.get('/overview');
  await h.app.audit.flush();
  const byActor = await c.get(`/audit?actor=${encodeURIComponent(`console:${ROOT.email}`)}`);
  t.match(byActor.body, /admin\.stats/);
  t.notMatch(byActor.body, /<td>token\.renew<\/td>/, 'only the console\'s rows');

  const csv = await c.get('/audit.csv?action=login&outcome=failure');
  t.equal(csv.status, 200);
  t.match(csv.headers['content-type'], /^text\/csv/);
  t.match(csv.headers['content-disposition'], /^attachment; filename="hellwall-audit-\d{4}-\d{2}-\d{2}\.csv"$/);
  const lines = csv.body.trim().split('\r\n');
  t.equal(lines[0], 'id,time,action,outcome,email,actor,ip,mac,session,detail');
  t.match(csv.body, /"'=HYPERLINK\(""x""\)@example.com"/, 'a formula is defused and quoted');
  t.match((await h.auditRows({ action: 'admin.audit.query' }))[0], { actor: `console:${ROOT.email}` });
});

t.test('maintenance: cleanup now reports the rows deleted and is audited', async (t) => {
  const { h, c } = await consoleHarness(t);
  const wire = await h.connect();
  await h.requestPasscode(wire);
  await c.login(h);
  h.clock.advance(h.app.config.passcodes.ttlSeconds * 1000 + 1000);
  // Within the console's idle time still: the passcode's lifetime is shorter.
  const page = await c.get('/maintenance');
  t.match(page.body, /Schema migrations/);
  t.match(page.body, /up to date/);
  t.match(page.body, /Key rotation/);
  const ran = await c.post('/maintenance/cleanup', { confirm: 'yes', _csrf: ConsoleClient.csrf(page) });
  t.match(ran.body, /Cleanup done: \d+ row\(s\) deleted/);
  t.match(ran.body, /<th scope="row">passcodes<\/th><td>1<\/td>/, 'the expired passcode');
  t.match((await h.auditRows({ action: 'admin.cleanup' }))[0], { outcome: 'success', actor: `console:${ROOT.email}`, detail: { passcodes: 1 } });
});

t.test('static files are served locally; unknown paths are a plain 404', async (t) => {
  const { c } = await consoleHarness(t);
  const js = await c.get('/static/console.js');
  t.equal(js.status, 200);
  t.match(js.headers['content-type'], /javascript/);
  t.equal(js.headers['content-security-policy'], CONSOLE_CSP);
  t.equal((await c.get('/static/console.css')).status, 200);
  const escape = await c.get('/static/../console-server.js');
  t.ok([403, 404].includes(escape.status), `no way out of the static folder (${escape.status})`);
  t.notMatch(escape.body, /ConsoleServer/);
  t.equal((await c.get('/nowhere')).status, 404);
});

t.test('the console is off when disabled, and stops with the app', async (t) => {
  const h = await startHarness(t, { config: { console: { enabled: false } } });
  t.equal(h.consolePort, 0);
  const on = await startHarness(t);
  const port = on.consolePort;
  await on.app.close(100);
  await t.rejects(plain(port, 'x'), { code: 'ECONNREFUSED' }, 'nothing listens after close');
});
