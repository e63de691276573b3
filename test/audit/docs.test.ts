import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ROOT } from '../helpers/root.js';
import { AUDIT_ACTIONS } from '../../src/audit/audit-log.js';

// Every action the server can record is documented in README's "Audit trail" table, and the table
// documents nothing the server does not record.
t.test('README lists exactly the recorded audit actions', async (t) => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Audit trail\n');
  t.ok(start > 0, 'README has an "Audit trail" section');
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  const what = section.slice(section.indexOf('### What is recorded'), section.indexOf('\n### ', section.indexOf('### What is recorded') + 1));
  const documented = [...what.matchAll(/^\| `([a-z_.]+)` \|/gm)].map((m) => m[1]);
  t.same(documented, Object.keys(AUDIT_ACTIONS), 'every action, nothing else, in the order of the registry');
});
