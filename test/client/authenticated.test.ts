import t from 'tap';
import { AuthenticatedClient } from '../../src/client/authenticated.js';
import type { TokenCheckRenew } from '../../src/protocol/messages.gen.js';
import { MAC, startHarness } from '../helpers/harness.js';

const HOUR = 3_600_000;

t.test('a stored token is renewed (and stored first) when a command finds it expired', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const { token } = await h.login(client);
  const saved: string[] = [];
  const auth = new AuthenticatedClient(client, { token, mac: MAC, source: 'file' }, (renewed: TokenCheckRenew) => {
    // The request that follows must not have been sent yet: the new token is stored first.
    t.equal(auth.token, token, 'still the old token while storing');
    saved.push(renewed.token);
  });
  t.match(await auth.call('session.list', {}), { status: 'ok', sessions: [{ current: true }] }, 'current: no renewal');
  t.same(saved, []);
  h.clock.advance(HOUR + 1000);
  t.match(await auth.call('session.list', {}), { status: 'ok', sessions: [{ current: true }] }, 'expired: renewed, then answered');
  t.equal(saved.length, 1);
  t.equal(auth.token, saved[0], 'later requests carry the new token');
  t.match(await client.check({ token: saved[0]!, mac: MAC, request: 'x' }), { status: 'authorized' });
});

t.test('a token given by hand is not renewed behind the operator', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const { token } = await h.login(client);
  const saved: string[] = [];
  const auth = new AuthenticatedClient(client, { token, mac: MAC, source: 'env' }, (r) => void saved.push(r.token));
  h.clock.advance(HOUR + 1000);
  t.match(await auth.call('session.list', {}), { status: 'error', error: 'E_UNAUTHENTICATED' });
  t.same(saved, []);
  const check = await auth.check('inventory.read');
  t.match(check, { status: 'renew' }, 'an explicit check still renews');
  t.equal(saved.length, 1, 'and hands the new token over');
});

t.test('a revoked token is not "renewed": the refusal is passed on', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  const { token } = await h.login(client);
  const auth = new AuthenticatedClient(client, { token, mac: MAC, source: 'file' }, () => void t.fail('no renewal'));
  t.match(await auth.call('session.logout', {}), { status: 'ok' });
  t.match(await auth.call('session.list', {}), { status: 'error', error: 'E_UNAUTHENTICATED' });
});
