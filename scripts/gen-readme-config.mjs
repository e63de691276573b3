// Rewrites the configuration table in README.md from the configuration schema (src/config-schema.ts,
// flattened to OPTIONS by src/config.ts, built to dist/), so that documentation and code cannot
// drift: test/config/config.test.ts checks that the table is the one this writes.
//   npm run build && node scripts/gen-readme-config.mjs
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { OPTIONS } = await import(path.join(root, 'dist', 'config.js'));
const file = path.join(root, 'README.md');
const head = '| option | env var | default | meaning |\n| --- | --- | --- | --- |\n';
const text = readFileSync(file, 'utf8');
const start = text.indexOf(head);
if (start < 0) throw new Error('README.md has no configuration table');
const from = start + head.length;
const to = text.indexOf('\n\n', from);
const rows = OPTIONS.map((o) => `| \`${o.key}\` | \`${o.env}\` | \`${String(o.default)}\` | ${o.doc} |`).join('\n');
writeFileSync(file, text.slice(0, from) + rows + text.slice(to));
console.log(`README.md: ${OPTIONS.length} options`);
