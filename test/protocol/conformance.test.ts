import { once } from 'node:events';
import tls from 'node:tls';
import t from 'tap';
import { HellwallClient } from '../../src/client/client.js';
import { encodeFrame } from '../../src/codec/frame-encoder.js';
import { loadProtocol } from '../../src/protocol/registry.js';
import { responseViolation } from '../helpers/conformance.js';
import { startHarness } from '../helpers/harness.js';

const protocol = loadProtocol();

t.test('the contract check accepts what the protocol allows', async (t) => {
  const ok: Array<Record<string, unknown>> = [
    { id: '1', code: 0, status: 'ok', protocol: 'hellwall', version: '1.0', maxFrameBytes: 65536, maxInflight: 64 },
    { code: 3, status: 'unauthorized' },
    { id: '2', code: 2, status: 'error', error: 'E_AUTH_FAILED', message: 'authentication failed' },
    { code: 99, status: 'error', error: 'E_UNKNOWN_COMMAND', message: 'unknown command code 99' },
    { status: 'error', error: 'E_SCHEMA', message: '(request) is missing required field "code"' },
    { status: 'error', error: 'E_FRAME_EMPTY', message: 'frame length is zero' },
  ];
  for (const r of ok) t.equal(responseViolation(protocol, r), null, JSON.stringify(r));
});

t.test('the contract check refuses what the protocol does not allow', async (t) => {
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ code: 3, status: 'authorized' }, /token-check\.response\.json/],
    [{ code: 3, status: 'unauthorized', why: 'expired' }, /token-check\.response\.json/],
    [{ code: 0, status: 'error', error: 'E_AUTH_FAILED', message: 'x' }, /hello may not answer E_AUTH_FAILED/],
    [{ code: 1, status: 'error', error: 'E_UNKNOWN_COMMAND', message: 'x' }, /may not answer E_UNKNOWN_COMMAND/],
    [{ code: 4242, status: 'error', error: 'E_SCHEMA', message: 'x' }, /names no command/],
    [{ code: 4242, status: 'ok' }, /names no command/],
    [{ id: '1', status: 'error', error: 'E_FRAME_INVALID_JSON', message: 'x' }, /neither id nor code/],
    [{ status: 'error', error: 'E_BUSY', message: 'x' }, /only E_SCHEMA/],
    [{ code: 0, status: 'error', error: 'E_NOPE', message: 'x' }, /error\.response\.json/],
    [{ code: 0, status: 'error', error: 'E_SCHEMA', message: 'x'.repeat(513) }, /error\.response\.json/],
  ];
  for (const [r, why] of bad) t.match(responseViolation(protocol, r), why, JSON.stringify(r).slice(0, 80));
});

t.test('a client with inspect rejects a response that breaks the contract', async (t) => {
  // A real TLS server that answers every frame with a token.check outcome the schema forbids.
  const h = await startHarness(t, { users: [] });
  const server = tls.createServer({ cert: h.ca, key: h.tls.key }, (socket) => {
    socket.on('data', () => socket.write(encodeFrame({ code: 3, status: 'unauthorized', reason: 'expired' })));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const port = (server.address() as { port: number }).port;
  const client = await HellwallClient.connect({ host: '127.0.0.1', port, ca: h.ca, inspect: (r) => h.validate(r) });
  t.teardown(() => client.destroy());
  await t.rejects(client.send({ code: 3 }), /response violates the protocol: token-check\.response\.json/);
  const lax = await HellwallClient.connect({ host: '127.0.0.1', port, ca: h.ca });
  t.teardown(() => lax.destroy());
  t.match(await lax.send({ code: 3 }), { reason: 'expired' }, 'without inspect the same answer is delivered');
});

t.test("the harness's clients check every response they receive", async (t) => {
  const h = await startHarness(t, { users: [] });
  const client = await h.connect();
  const before = h.checked;
  await client.hello();
  await client.send({ code: 77 });
  await client.check({ token: 'x', mac: '00:1a:2b:3c:4d:5e', request: 'a' });
  t.equal(h.checked - before, 3);
});
