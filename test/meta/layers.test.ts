import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from '../helpers/root.js';
import t from 'tap';

// Issue 16: imports run one way (transport -> dispatch -> handlers -> services -> store/mail/audit,
// over a shared base). scripts/import-layers.mjs reads every import under src/ with the TypeScript
// parser; this keeps the tree at zero and proves the script would notice one that runs backwards.

const SCRIPT = path.join(ROOT, 'scripts/import-layers.mjs');

const run = (root?: string) =>
  spawnSync(process.execPath, [SCRIPT, '--check', ...(root === undefined ? [] : [root])], { cwd: ROOT, encoding: 'utf8' });

t.test('no import under src/ runs against the layering', async (t) => {
  const r = run();
  t.equal(r.status, 0, r.stdout + r.stderr);
  t.match(r.stdout, /^0 import\(s\) against the layering/m);
});

t.test('a store module importing a handler is named and fails the check', async (t) => {
  const dir = t.testdir({ src: { store: {}, handlers: {} } });
  mkdirSync(path.join(dir, 'src/store'), { recursive: true });
  writeFileSync(path.join(dir, 'src/handlers/hello.ts'), 'export const hello = 1;\n');
  writeFileSync(path.join(dir, 'src/store/store.ts'), "import { hello } from '../handlers/hello.js';\nexport const x = hello;\n");
  const r = run(dir);
  t.equal(r.status, 1);
  t.match(r.stdout, /src\/store\/store\.ts\s+-> src\/handlers\/hello\.ts/);
  t.match(r.stdout, /^1 import\(s\) against the layering/m);
});
