import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { ALICE, MAC, startHarness } from '../helpers/harness.js';
import { ROOT } from '../helpers/console-client.js';
import { passcodeFrom } from '../helpers/smtp-sink.js';
import { ROOT as REPO } from '../helpers/processes.js';

// One browser launch, a few pages: a real Chromium logs in through the real passcode flow (SMTP
// sink) and does one thing per page, each checked in the database and the audit trail.
const CHROMIUM = '/usr/bin/chromium';
// Gitignored: every run writes one screenshot per page here (two are kept in docs/console/).
const SHOTS = path.join(REPO, 'artifacts', 'console');
const DEVICE_NAME = '<script>x</script>';

if (!existsSync(CHROMIUM) && !process.env.HELLWALL_REQUIRE_BROWSER) {
  t.test('the console in a real browser', { skip: `no browser at ${CHROMIUM} (apt-get install chromium; CI sets HELLWALL_REQUIRE_BROWSER=1 and runs this)` }, () => {});
} else {
  t.test('an administrator uses every page of the console in a real browser', async (t) => {
    const { chromium } = await import('playwright-core');
    const h = await startHarness(t, { users: [ALICE, ROOT] });
    // An operator logged in on the wire, for the sessions page to end, on a registered device
    // whose name is markup (it must show as text).
    await h.app.services.devices.register({ name: 'cli:test', auditReads: false }, ALICE.email, MAC, DEVICE_NAME);
    const wire = await h.connect();
    await h.login(wire);
    await h.app.mail.drain();
    const base = `https://127.0.0.1:${h.consolePort}`;
    mkdirSync(SHOTS, { recursive: true });

    const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    t.teardown(() => browser.close());
    // The harness's certificate is a throwaway self-signed one.
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    // Fail fast: everything here is local.
    page.setDefaultTimeout(10_000);
    const errors: string[] = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(e.message));
    // Destructive actions ask first (window.confirm from console.js): the administrator says yes.
    page.on('dialog', (d) => void d.accept());

    await t.test('login through password and the mailed passcode', async (t) => {
      await page.goto(`${base}/overview`);
      t.equal(new URL(page.url()).pathname, '/login', 'no session: the login page');
      await page.fill('#email', ROOT.email);
      await page.fill('#phone', ROOT.phone);
      await page.fill('#password', ROOT.password);
      const since = h.smtp.messages.length;
      await page.click('button[type=submit]');
      await page.waitForURL('**/login/passcode');
      await page.fill('#passcode', passcodeFrom(await h.smtp.waitFor(ROOT.email, since)));
      await page.click('main button[type=submit]');
      await page.waitForURL('**/overview');
      const session = (await context.cookies()).find((c) => c.name === '__Host-hw_session');
      t.match(session, { httpOnly: true, secure: true, sameSite: 'Strict', path: '/', expires: -1 }, 'HttpOnly, Secure, SameSite=Strict, gone with the browser');
      t.equal(await page.evaluate(() => (globalThis as unknown as { document: { cookie: string } }).document.cookie), '', 'no script sees a cookie');
      t.match((await h.auditRows({ action: 'admin.console.login' }))[0], { outcome: 'success', actor: `console:${ROOT.email}` });
    });

    await t.test('overview: the counts and the chart', async (t) => {
      t.match(await page.textContent('main'), /Active sessions/);
      t.equal(await page.locator('svg[role=img] rect.bar-ok:not([height="0"])').count(), 1, 'the login chart has this hour\'s bar (two logins)');
      await page.screenshot({ path: path.join(SHOTS, 'overview.png'), fullPage: true });
      t.match((await h.auditRows({ action: 'admin.stats' }))[0], { actor: `console:${ROOT.email}` });
    });

    await t.test('users: add an operator, then disable them (confirmed)', async (t) => {
      await page.click('nav >> text=Users');
      await page.fill('#add-email', 'bob@example.com');
      await page.fill('#add-phone', '+1 555 0102');
      await page.selectOption('#add-role', 'user');
      await page.fill('#add-password', 'bob has a long password');
      await page.click('form[action="/users/add"] button');
      t.match(await page.textContent('.notice'), /Added bob@example.com/);
      t.ok(await h.app.store.findUserByEmail('bob@example.com'), 'in the database');
      await page.screenshot({ path: path.join(SHOTS, 'users.png'), fullPage: true });
      await page.click('a:text("bob@example.com")');
      await page.click('form[action="/user/disable"] button');
      t.match(await page.textContent('.notice'), /Disabled bob@example.com/);
      t.equal((await h.app.store.findUserByEmail('bob@example.com'))?.disabled, true);
      await page.screenshot({ path: path.join(SHOTS, 'user.png'), fullPage: true });
      const actions = (await h.auditRows({ actor: `console:${ROOT.email}` })).map((r) => r.action);
      t.ok(actions.includes('admin.user.add') && actions.includes('admin.user.disable'), 'both audited from the console');
    });

    await t.test('sessions: end the wire session of an operator', async (t) => {
      await page.click('nav >> text=Sessions');
      await page.fill('#f-email', ALICE.email);
      await page.click('form.filters button');
      const alice = (await h.app.store.findUserByEmail(ALICE.email))!;
      const [open] = await h.app.store.listOpenSessions(alice.id);
      const row = page.locator(`tr:has(input[value="${open!.id}"])`);
      t.equal(await row.locator('td:nth-child(6)').textContent(), DEVICE_NAME, 'the device name, as text');
      t.equal(await row.locator('td:nth-child(7)').textContent(), 'yes', 'registered');
      t.equal(await page.locator('main script').count(), 0, 'no script element made of it');
      await page.screenshot({ path: path.join(SHOTS, 'sessions.png'), fullPage: true });
      await page.click(`form[action="/sessions/revoke"]:has(input[value="${open!.id}"]) button`);
      t.match(await page.textContent('.notice'), new RegExp(`Ended session ${open!.id}`));
      t.equal((await h.app.store.findSessionById(open!.id))?.revokeReason, 'admin-revoked');
      t.match((await h.auditRows({ action: 'admin.session.revoke' }))[0], { actor: `console:${ROOT.email}`, detail: { target: open!.id } });
    });

    await t.test('audit: filter by actor', async (t) => {
      await page.click('nav >> text=Audit');
      await page.fill('#a-actor', `console:${ROOT.email}`);
      await page.fill('#a-action', 'admin.user.*');
      await page.click('form.filters button');
      const cells = await page.locator('table.audit tbody td:nth-child(3)').allTextContents();
      t.ok(cells.length >= 2 && cells.every((c) => c.startsWith('admin.user.')), `only the console's user changes (${cells.join(', ')})`);
      t.ok(await page.isVisible('a[href^="/audit.csv?"]'), 'the export link');
      await page.screenshot({ path: path.join(SHOTS, 'audit.png'), fullPage: true });
      t.match((await h.auditRows({ action: 'admin.audit.query' }))[0], { actor: `console:${ROOT.email}`, detail: { actor: `console:${ROOT.email}` } });
    });

    await t.test('maintenance: clean up now', async (t) => {
      await page.click('nav >> text=Maintenance');
      await page.click('form[action="/maintenance/cleanup"] button');
      t.match(await page.textContent('.notice'), /Cleanup done: \d+ row\(s\) deleted/);
      t.ok(await page.isVisible('table.counts'), 'the counts by table');
      await page.screenshot({ path: path.join(SHOTS, 'maintenance.png'), fullPage: true });
      t.match((await h.auditRows({ action: 'admin.cleanup' }))[0], { outcome: 'success', actor: `console:${ROOT.email}` });
    });

    await t.test('a change without the page\'s CSRF token is refused, with the session cookie sent', async (t) => {
      const res = await page.request.post(`${base}/user/enable`, { form: { email: 'bob@example.com' }, headers: { origin: base } });
      t.equal(res.status(), 403);
      t.equal((await h.app.store.findUserByEmail('bob@example.com'))?.disabled, true, 'nothing changed');
    });

    await t.test('no serious or critical accessibility violations (axe-core)', async (t) => {
      // axe is injected as a script, which the console's CSP rightly forbids: this context alone
      // bypasses it, with the same session.
      const axeContext: BrowserContext = await browser.newContext({ ignoreHTTPSErrors: true, bypassCSP: true, storageState: await context.storageState() });
      const axePage: Page = await axeContext.newPage();
      const axe = readFileSync(path.join(REPO, 'node_modules/axe-core/axe.min.js'), 'utf8');
      for (const p of ['/login', '/overview', '/users', '/user?email=bob%40example.com', '/user?email=alice%40example.com', '/sessions', '/audit', '/maintenance']) {
        await axePage.goto(`${base}${p}`);
        await axePage.addScriptTag({ content: axe });
        const violations = await axePage.evaluate(async () => {
          const r = await (globalThis as unknown as { axe: { run: () => Promise<{ violations: Array<{ id: string; impact: string | null; nodes: unknown[] }> }> } }).axe.run();
          return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length }));
        });
        t.strictSame(violations.filter((v) => v.impact === 'serious' || v.impact === 'critical'), [], `${p}: ${JSON.stringify(violations)}`);
      }
      await axeContext.close();
    });

    t.strictSame(errors, [], 'no script error or CSP violation in the console');
    await context.close();
  });
}

