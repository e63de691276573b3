import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from '../helpers/root.js';
import t from 'tap';
import { COMMAND_CODES } from '../../src/protocol/messages.gen.js';
import { loadProtocol } from '../../src/protocol/registry.js';
import { ALICE, MAC, startHarness } from '../helpers/harness.js';

// Issue 16: command codes live in protocol/index.json and nowhere else. The generated table follows
// the index (gen:types --check guards staleness), and no client writes a code by hand.


t.test('COMMAND_CODES is the index, name for name', async (t) => {
  const fromIndex = Object.fromEntries([...loadProtocol().commands].map(([code, c]) => [c.name, code]));
  t.same({ ...COMMAND_CODES }, fromIndex);
});

t.test('the client and the CLI write no command code by hand', async (t) => {
  for (const file of ['src/client/client.ts', 'src/client/authenticated.ts', 'src/cli.ts', 'src/cli/client.ts', 'src/cli/client-admin.ts', 'src/cli/client-connection.ts', 'src/cli/menu.ts']) {
    const text = readFileSync(path.join(ROOT, file), 'utf8');
    t.same(text.match(/\bcode: \d+/g) ?? [], [], `${file}: codes come from COMMAND_CODES`);
  }
});

t.test('client.command sends any command by name', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const hello = await client.command('hello', {});
  t.match(hello, { status: 'ok', code: 0 });
  const { token } = await h.login(client);
  t.match(await client.command('session.list', { token, mac: MAC }), { status: 'ok', code: 6, sessions: [{ current: true }] });
  t.match(await client.command('passcode.request', { email: ALICE.email, password: 'nope nope nope', mac: MAC }), { status: 'ok', code: 1 });
});
