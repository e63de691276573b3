import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import t from 'tap';
import { parseFrame } from '../../src/codec/frame-decoder.js';
import { createLogger } from '../../src/log.js';
import type { DispatchFn, Response } from '../../src/server/dispatcher.js';
import { loadProtocol } from '../../src/protocol/registry.js';
import { LogSink } from '../helpers/log-sink.js';

// The dispatcher's id and code checks [P-2.1]–[P-2.4], with every handler replaced by one that
// answers `ok`: what is checked here happens before any handler runs, so the services do not
// matter. The same rules over the real wire: test/integration/bad-input.test.ts and the vectors.

const protocol = loadProtocol();
const handlers = Object.fromEntries([...protocol.commands.values()].map((c) => [c.name, () => ({ status: 'ok' })]));
// Absolute URLs of the modules as loaded: tests run compiled from dist-test/, where ../../src is a
// link to dist/, and tap would resolve a relative name from the source-mapped test/ path instead.
const real = (name: string): string => pathToFileURL(realpathSync(new URL(name, import.meta.url))).href;
const { createDispatcher } = await t.mockImport<typeof import('../../src/server/dispatcher.js')>(real('../../src/server/dispatcher.js'), {
  [real('../../src/handlers/index.js')]: { HANDLERS: handlers },
});
const dispatch: DispatchFn = createDispatcher({} as never, protocol);
const ctx = { ip: '192.0.2.7', log: createLogger('silent', new LogSink()), refusals: 0 };
/** Sends `text` as a frame's payload would arrive. */
const send = (text: string): Response => {
  const parsed = parseFrame(Buffer.from(text));
  if (!parsed.ok) throw new Error(parsed.error.message);
  return dispatch(parsed.value, ctx) as Response;
};

t.test('a code outside 0..65535 answers E_SCHEMA and is never echoed', async (t) => {
  for (const code of ['-1', '65536', '4294967296', '18446744073709551616', '1e23', '-1e23', '9007199254740993']) {
    const res = send(`{"code":${code},"id":"c"}`);
    t.match(res, { id: 'c', status: 'error', error: 'E_SCHEMA', message: '/code must be from 0 to 65535' }, `code ${code}`);
    t.notOk('code' in res, `code ${code}: no code in the answer`);
    t.equal(protocol.validateError(res), true, `code ${code}: the answer follows the error schema`);
  }
  // JSON.parse reads 1E+400 as Infinity: not an integer at all.
  t.match(send('{"code":1E+400}'), { status: 'error', error: 'E_SCHEMA', message: '/code must be integer' });
  t.notOk('code' in send('{"code":1E+400}'));
  t.notOk(JSON.stringify(send('{"code":1e23}')).includes('e+'), 'nothing like 1e+23 is ever written');
});

t.test('codes inside the range answer as before', async (t) => {
  t.same(send('{"code":0,"id":"h"}'), { id: 'h', code: 0, status: 'ok' });
  t.match(send('{"code":65535,"id":"u"}'), { id: 'u', code: 65535, error: 'E_UNKNOWN_COMMAND' }, 'the largest code is an unknown command, echoed');
  t.match(send('{"code":99}'), { code: 99, error: 'E_UNKNOWN_COMMAND' });
  t.match(send('{"code":1.5,"id":"f"}'), { id: 'f', error: 'E_SCHEMA', message: '/code must be integer' });
  t.match(send('{"id":"m"}'), { id: 'm', error: 'E_SCHEMA', message: '(request) is missing required field "code"' });
});

t.test('an id outside common.json#/definitions/id is never echoed, whatever the command', async (t) => {
  const bad = ['"\\u0000"', '"a\\u0000b"', '"\\ud800"', '"x\\udfff"', '"\\ude00\\ud83d"', '"\\u0085"', '"tab\\t"', `"${'x'.repeat(65)}"`, '""', '7', 'null'];
  for (const id of bad) {
    for (const code of [0, 99, 70000]) {
      const res = send(`{"code":${code},"id":${id}}`);
      t.notOk('id' in res, `id ${id} with code ${code}: not echoed (${String(res.error)})`);
      t.equal(protocol.validateError(res), true, `id ${id} with code ${code}: the answer follows the error schema`);
    }
    t.match(send(`{"code":0,"id":${id}}`), { status: 'error', error: 'E_SCHEMA', code: 0 }, `id ${id}: hello refuses it`);
  }
  t.same(send('{"code":0,"id":"\\ud83d\\ude00"}'), { id: '😀', code: 0, status: 'ok' }, 'a surrogate pair is one character, and echoed');
});

t.test('duplicate keys: the last one wins, as JSON.parse reads them', async (t) => {
  t.match(send('{"code":99,"id":"a","code":0}'), { id: 'a', code: 0, status: 'ok' });
  t.match(send('{"code":0,"id":"first","id":"second"}'), { id: 'second', code: 0, status: 'ok' });
  t.match(send('{"code":0,"id":"a","id":"\\u0000"}'), { code: 0, error: 'E_SCHEMA' }, 'a bad last id is refused even when an earlier one was good');
  t.notOk('id' in send('{"code":0,"id":"a","id":"\\u0000"}'));
});
