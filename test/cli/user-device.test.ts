import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import t from 'tap';
import { buildApp } from '../../src/app.js';
import type { Ctx } from '../../src/cli/command.js';
import { userDevice } from '../../src/cli/user-device.js';
import { refusal } from '../helpers/services.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';

// `hellwall user device add|list|remove`, run in-process on a data directory, as the CLI runs it:
// the same device service and audit rows as the wire's admin.device.* commands.

const MAC = '00:1a:2b:3c:4d:5e';

function context(dataDir: string): Ctx & { readonly stdout: string[]; readonly stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return {
    env: { HELLWALL_DATA_DIR: dataDir, HELLWALL_LOG_LEVEL: 'silent' },
    io: { stdout: { write: (s: string) => stdout.push(s) }, stderr: { write: (s: string) => stderr.push(s) }, stdin: new PassThrough() },
    out: (s) => stdout.push(s),
    note: (s) => stderr.push(s),
    warn: (s) => stderr.push(s),
    stdout,
    stderr,
  };
}

const run = async (ctx: Ctx, action: string, values: Record<string, string | boolean>): Promise<number> => userDevice.run(ctx, { values, positionals: [action] });

t.test('registers, lists and removes a device of an operator, each change audited with the CLI as actor', async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-cli-device-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const setup = buildApp({ config: loadConfig({}, { dataDir }), log: createLogger('silent'), scrypt: { ln: 10, r: 8, p: 1 } });
  await setup.addUser({ email: 'ops@example.com', phone: '+15550100', role: 'user', password: 'correct horse battery staple' });
  await setup.close();

  const ctx = context(dataDir);
  t.equal(await run(ctx, 'add', { email: 'ops@example.com', mac: MAC.toUpperCase(), name: 'desk PC' }), 0);
  t.match(ctx.stdout.at(-1), `registered ${MAC} for ops@example.com`);
  t.equal(await run(ctx, 'list', { email: 'ops@example.com', json: true }), 0);
  t.match(JSON.parse(ctx.stdout.at(-1)!), [{ mac: MAC, name: 'desk PC', registered: true, registeredBy: /^cli:/ }]);
  t.equal(await run(ctx, 'list', { email: 'ops@example.com' }), 0);
  t.match(ctx.stdout.at(-1), /desk PC\s+yes \(cli:/);
  t.equal(await run(ctx, 'remove', { email: 'ops@example.com', mac: MAC }), 0);
  t.match(ctx.stdout.at(-1), `removed ${MAC} from ops@example.com; 0 session(s) ended`);
  await t.rejects(run(ctx, 'remove', { email: 'ops@example.com', mac: MAC }), refusal('not-found'));
  await t.rejects(run(ctx, 'add', { email: 'ops@example.com' }), { name: 'UsageError' }, '--mac is required');
  await t.rejects(run(ctx, 'rename', { email: 'ops@example.com' }), { name: 'UsageError' });

  const check = buildApp({ config: loadConfig({}, { dataDir }), log: createLogger('silent') });
  t.teardown(() => check.close());
  const rows = await check.store.queryAudit({ action: 'admin.device.*', limit: 10 });
  t.same(rows.map((r) => `${r.action}:${r.outcome}`), ['admin.device.remove:failure', 'admin.device.remove:success', 'admin.device.register:success']);
  t.ok(rows.every((r) => r.actor?.startsWith('cli:')));
});
