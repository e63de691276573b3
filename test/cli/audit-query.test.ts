import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { parseTime } from '../../src/cli/values.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import type { AuditEvent } from '../../src/store/store.js';
import { env } from '../helpers/processes.js';
import { runCli, auditJson, type AuditRow } from '../helpers/cli.js';

// `hellwall audit`'s filters, paging and output, with the built CLI on a database seeded with
// known rows at known times. Each CLI run costs a process start: the cases below are chosen, not
// exhaustive; parseTime's corners are tested in-process at the end.

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

t.test('hellwall audit filters by email, action, prefix, outcome, time and pages with --before-id', async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-audit-'));
  const e = env(dataDir);
  const now = Date.now();
  const ann = { userId: 1, email: 'ann@example.com' };
  const bob = { userId: 2, email: 'bob@example.com' };
  // In order of time, so row n has id n (1 the oldest).
  const events: AuditEvent[] = [
    { at: now - 10 * DAY, action: 'login', outcome: 'success', ...ann, ip: '192.0.2.1', mac: '00:1a:2b:3c:4d:01', sessionId: 1 },
    { at: now - 8 * DAY, action: 'passcode.request', outcome: 'failure', ...bob, ip: '192.0.2.2', detail: { reason: 'bad-password' } },
    { at: now - 2 * DAY, action: 'admin.user.disable', outcome: 'success', ...ann, actor: 'cli:alice', detail: { sessionsEnded: 1 } },
    { at: now - 2 * DAY + 1000, action: 'admin.user.enable', outcome: 'success', ...ann, actor: 'admin:root@example.com', ip: '192.0.2.9', mac: '00:1a:2b:3c:4d:09', sessionId: 3 },
    { at: now - 3 * HOUR, action: 'token.denied', outcome: 'denied', ...ann, sessionId: 5, detail: { request: 'inventory.delete', role: 'user' } },
    { at: now - 2 * HOUR, action: 'login', outcome: 'failure', ...bob, detail: { reason: 'passcode' } },
    { at: now - 10 * MINUTE, action: 'admin.session.revoke', outcome: 'success', ...bob, actor: 'cli:alice', detail: { target: 4, targetMac: '00:1a:2b:3c:4d:04' } },
    { at: now - 5 * MINUTE, action: 'login', outcome: 'failure', email: 'evil\u001b[2J@example.com', detail: { reason: 'unknown-account', note: 'two words' } },
    { at: now - MINUTE, action: 'admin.audit.query', outcome: 'success', actor: 'admin:root@example.com', detail: { action: 'login', rows: 3 } },
  ];
  const store = openSqliteStore(path.join(dataDir, 'hellwall.db'));
  await store.appendAudit(events);
  await store.close();
  const ids = async (...args: string[]) => (await auditJson(e, ...args)).map((r) => r.id);

  t.same(await ids(), [9, 8, 7, 6, 5, 4, 3, 2, 1], 'newest first');
  t.same(await ids('--email', 'ANN@Example.com'), [5, 4, 3, 1], 'by email, case-insensitively');
  t.same(await ids('--action', 'login'), [8, 6, 1], 'by action');
  t.same(await ids('--action', 'admin.*'), [9, 7, 4, 3], 'by prefix');
  t.same(await ids('--action', 'admin.user.*'), [4, 3]);
  t.same(await ids('--outcome', 'failure'), [8, 6, 2], 'by outcome');
  t.same(await ids('--email', 'bob@example.com', '--outcome', 'failure'), [6, 2], 'filters combine');
  t.same(await ids('--since', '7d'), [9, 8, 7, 6, 5, 4, 3], 'since a relative age');
  t.same(await ids('--since', '30m'), [9, 8, 7]);
  t.same(await ids('--since', '3d', '--until', '1d'), [4, 3], 'between two ages');
  t.same(await ids('--since', new Date(now - 9 * DAY).toISOString().slice(0, 16)), [9, 8, 7, 6, 5, 4, 3, 2], 'since an ISO time without a zone: UTC');
  const inIndia = new Date(now - 2 * DAY + 500 + 5.5 * HOUR).toISOString().replace('Z', '+05:30');
  t.same(await ids('--until', inIndia), [3, 2, 1], 'until an ISO time with an offset');
  t.same(await ids('--since', '2000-01-01', '--action', 'token.denied'), [5], 'an ISO date');

  // Paging: --limit, then --before-id the last id shown, reaches every row once.
  const pages: number[][] = [];
  for (let before: number | undefined; ; ) {
    const page = await ids('--limit', '4', ...(before === undefined ? [] : ['--before-id', String(before)]));
    pages.push(page);
    if (page.length < 4) break;
    before = page.at(-1);
  }
  t.same(pages, [[9, 8, 7, 6], [5, 4, 3, 2], [1]]);
  t.same(await ids('--action', 'login', '--limit', '1', '--before-id', '8'), [6], 'paging within a filter');

  // --json: one array on one line, every field, `at` in ms (as on the wire), detail as an object; nothing else.
  const json = await runCli(['audit', '--json', '--email', 'ann@example.com', '--limit', '2'], e);
  t.equal(json.stderr, '', 'nothing else is said, not even the paging hint');
  t.equal(json.stdout.split('\n').length, 2, 'one line');
  const rows = JSON.parse(json.stdout) as AuditRow[];
  t.same(rows, [
    {
      id: 5,
      at: now - 3 * HOUR,
      action: 'token.denied',
      outcome: 'denied',
      userId: 1,
      email: 'ann@example.com',
      actor: null,
      ip: null,
      mac: null,
      sessionId: 5,
      detail: { request: 'inventory.delete', role: 'user' },
    },
    {
      id: 4,
      at: now - 2 * DAY + 1000,
      action: 'admin.user.enable',
      outcome: 'success',
      userId: 1,
      email: 'ann@example.com',
      actor: 'admin:root@example.com',
      ip: '192.0.2.9',
      mac: '00:1a:2b:3c:4d:09',
      sessionId: 3,
      detail: null,
    },
  ]);

  // For people: a table, times in ISO, '-' for nothing, detail as key=value.
  const human = await runCli(['audit'], e);
  t.equal(human.code, 0);
  t.equal(human.stderr, '');
  const lines = human.stdout.trimEnd().split('\n');
  t.match(lines[0], /^id\s+time\s+action\s+outcome\s+email\s+actor\s+ip\s+mac\s+session\s+detail$/);
  t.equal(lines.length, 10);
  const line = (id: number) => lines.find((l) => l.startsWith(`${id} `))!;
  const time = new Date(now - 2 * DAY).toISOString().replace(/\./g, '\\.');
  t.match(line(3), new RegExp(`^3\\s+${time}\\s+admin\\.user\\.disable\\s+success\\s+ann@example\\.com\\s+cli:alice\\s+-\\s+-\\s+-\\s+sessionsEnded=1$`));
  t.match(line(1), /\slogin\s+success\s+ann@example\.com\s+-\s+192\.0\.2\.1\s+00:1a:2b:3c:4d:01\s+1\s+-$/);
  t.match(line(7), /target=4 targetMac=00:1a:2b:3c:4d:04$/);
  t.match(line(8), /evil\\u001b\[2J@example\.com/, 'a control character is shown escaped');
  t.match(line(8), /reason=unknown-account note="two words"$/);
  t.notOk(human.stdout.includes('\u001b'), 'no escape byte reaches the terminal');
  const limited = await runCli(['audit', '--limit', '2'], e);
  t.equal(limited.stdout.trimEnd().split('\n').length, 3);
  t.match(limited.stderr, /2 rows shown \(the limit\); older ones: --before-id 8/, 'says how to page on');

  // Bad filters: what the CLI cannot parse is a usage error (2), what the service refuses is 1.
  const bad: Array<[string[], number, RegExp]> = [
    [['--since', 'yesterday'], 2, /--since must be an ISO-8601 date or time .* not "yesterday"/],
    [['--limit', 'ten'], 2, /--limit must be a whole number/],
    [['--colour'], 2, /Unknown option '--colour'/],
    [['--outcome', 'bogus'], 1, /^hellwall: outcome must be one of success, failure, denied\n$/],
    [['--action', 'Admin**'], 1, /action must be an action name/],
    [['--limit', '1001'], 1, /limit must be 1 to 1000/],
    [['--since', '1d', '--until', '2d'], 1, /since must be before until/],
  ];
  for (const [args, code, message] of bad) {
    const r = await runCli(['audit', ...args], e);
    t.equal(r.code, code, `audit ${args.join(' ')} exits ${code}`);
    t.match(r.stderr, message);
    t.equal(r.stdout, '', 'and prints nothing on stdout');
  }
  t.equal((await auditJson(e)).length, 9, 'queries from the CLI, good or bad, add no row');
});

t.test('--since and --until take ISO-8601 dates and times or an age', async (t) => {
  // Times without a zone are UTC whatever the machine's zone: test in one far from UTC.
  const tz = process.env.TZ;
  process.env.TZ = 'Asia/Kolkata';
  t.teardown(() => {
    if (tz === undefined) delete process.env.TZ;
    else process.env.TZ = tz;
  });
  t.equal(new Date(Date.UTC(2025, 0, 1)).getHours(), 5, 'the zone is in force');
  const now = Date.UTC(2025, 5, 15, 12, 0, 0);
  t.equal(parseTime('90s', '--since', now), now - 90_000);
  t.equal(parseTime('30m', '--since', now), now - 30 * MINUTE);
  t.equal(parseTime('12h', '--since', now), now - 12 * HOUR);
  t.equal(parseTime('7d', '--since', now), now - 7 * DAY);
  t.equal(parseTime('2w', '--since', now), now - 14 * DAY);
  t.equal(parseTime('0m', '--since', now), now);
  t.equal(parseTime('2025-03-01', '--since', now), Date.UTC(2025, 2, 1), 'a date is midnight UTC');
  t.equal(parseTime('2025-03-01T14:30', '--since', now), Date.UTC(2025, 2, 1, 14, 30), 'a time without a zone is UTC');
  t.equal(parseTime('2025-03-01 14:30:15', '--since', now), Date.UTC(2025, 2, 1, 14, 30, 15), 'a space for the T');
  t.equal(parseTime('2025-03-01T14:30:15.25Z', '--since', now), Date.UTC(2025, 2, 1, 14, 30, 15, 250));
  t.equal(parseTime('2025-03-01t14:30:00z', '--since', now), Date.UTC(2025, 2, 1, 14, 30), 'either case');
  t.equal(parseTime('2025-03-01T14:30:00+02:00', '--since', now), Date.UTC(2025, 2, 1, 12, 30));
  t.equal(parseTime('2025-03-01T14:30:00-0130', '--since', now), Date.UTC(2025, 2, 1, 16, 0), 'an offset without a colon');
  t.equal(parseTime('2024-02-29', '--since', now), Date.UTC(2024, 1, 29), 'a leap day');
  for (const bad of ['', 'now', 'yesterday', '5y', '-7d', '7 d', '7D', '1.5h', '2025-02-30', '2023-02-29', '2025-13-01', '2025-3-1', '2025-03-01T25:00', '2025-03-01T14', '1700000000000', '2025-03-01T14:30:00+2']) {
    t.throws(() => parseTime(bad, '--until', now), { message: /^--until must be an ISO-8601 date or time/ }, JSON.stringify(bad));
  }
});
