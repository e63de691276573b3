import t from 'tap';
import { escapeHtml, html, raw } from '../../src/console/html.js';
import { csvField, toQuery } from '../../src/console/audit-page.js';
import { ConsoleSessions } from '../../src/console/console-sessions.js';
import { FakeClock } from '../helpers/harness.js';

t.test('html escapes every interpolated value, markup only when made by html or raw', async (t) => {
  t.equal(escapeHtml(`<a href="x" onclick='y'>&</a>`), '&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;');
  const name = '<script>alert(1)</script>';
  t.equal(html`<p title="${name}">${name}</p>`.text, '<p title="&lt;script&gt;alert(1)&lt;/script&gt;">&lt;script&gt;alert(1)&lt;/script&gt;</p>');
  t.equal(html`<ul>${['<b>', html`<li>ok</li>`]}</ul>`.text, '<ul>&lt;b&gt;<li>ok</li></ul>', 'lists: text escaped, markup kept');
  t.equal(html`${raw('<br>')}${null}${undefined}${false}${0}`.text, '<br>0');
});

t.test('CSV fields are quoted as RFC 4180 says and formulas are defused', async (t) => {
  t.equal(csvField('plain'), 'plain');
  t.equal(csvField(null), '');
  t.equal(csvField(42), '42');
  t.equal(csvField('a,b'), '"a,b"');
  t.equal(csvField('say "hi"'), '"say ""hi"""');
  t.equal(csvField('line\nbreak'), '"line\nbreak"');
  for (const f of ['=1+1', '+1', '-1', '@SUM(A1)', '\tx', '\rx']) t.equal(csvField(f), `"'${f}"`, JSON.stringify(f));
});

t.test('the audit filter becomes a query; a malformed time is named', async (t) => {
  t.strictSame(toQuery({ actor: ' console:a@b ', outcome: 'failure', since: '2026-11-21T12:00', before: '9' }, 50).query, {
    actor: 'console:a@b',
    outcome: 'failure',
    since: Date.UTC(2026, 10, 21, 12),
    beforeId: 9,
    limit: 50,
  });
  t.match(toQuery({ until: 'yesterday' }, 50).problem, /Until must be a date and time/);
  t.match(toQuery({ since: '2026-02-30T10:00' }, 50).problem ?? 'accepted', /not a real date|accepted/);
});

t.test('console sessions end when idle or when their token expires; CSRF tokens fit one cookie', async (t) => {
  const clock = new FakeClock();
  let n = 0;
  const random = (size: number) => Buffer.alloc(size, ++n);
  const s = new ConsoleSessions({ clock: clock.fn, random, idleMs: 60_000 });
  const id = s.open({ token: 't', mac: '02:00:00:00:00:01', email: 'a@b', expiresAt: clock.now + 150_000 });
  clock.advance(59_000);
  t.ok(s.use(id), 'used within the idle time');
  clock.advance(59_000);
  t.ok(s.use(id), 'the idle time starts again at each use');
  clock.advance(40_000);
  t.equal(s.use(id), undefined, 'not past the token\'s expiry, idle or not');
  const idle = s.open({ token: 't', mac: 'm', email: 'a@b', expiresAt: clock.now + 1e9 });
  clock.advance(60_000);
  t.equal(s.use(idle), undefined, 'idle too long');
  t.equal(s.use(undefined), undefined);

  const csrf = s.csrf('session', 'cookie-a');
  t.ok(s.checkCsrf('session', 'cookie-a', csrf));
  t.notOk(s.checkCsrf('session', 'cookie-b', csrf), 'not for another cookie');
  t.notOk(s.checkCsrf('login', 'cookie-a', csrf), 'not for another purpose');
  t.notOk(s.checkCsrf('session', undefined, csrf));
  t.notOk(s.checkCsrf('session', 'cookie-a', 42));
});

t.test('pending logins expire with the passcode and are bounded in number', async (t) => {
  const clock = new FakeClock();
  let n = 0;
  const random = (size: number) => Buffer.alloc(size, ++n % 256);
  const s = new ConsoleSessions({ clock: clock.fn, random, idleMs: 60_000, max: 3 });
  const login = { email: 'a@b', phone: '1', password: 'p', mac: 'm', expiresAt: clock.now + 1000 };
  const first = s.startLogin(login);
  t.ok(s.pendingLogin(first));
  for (let i = 0; i < 3; i++) s.startLogin(login);
  t.equal(s.pendingLogin(first), undefined, 'the oldest made room');
  t.equal(s.size.pending, 3);
  const last = s.startLogin(login);
  clock.advance(1000);
  t.equal(s.pendingLogin(last), undefined, 'expired with the passcode');
  s.endLogin(last);
});
