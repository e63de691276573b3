import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { ALICE, MAC, startHarness } from '../helpers/harness.js';
import { sample } from '../helpers/http.js';
import { LogSink } from '../helpers/log-sink.js';

// [P-4.7] token.check answers authorized only when the token's role may make the request.

const BOB = { email: 'bob@example.com', phone: '+1 555 0101', password: 'another long pass phrase', role: 'admin' };
const HOUR = 3_600_000;

const POLICY = {
  roles: ['user', 'admin'],
  public: ['status.read'],
  rules: [
    { requests: ['inventory.*'], roles: ['user', 'admin'] },
    { requests: ['admin.*'], roles: ['admin'] },
  ],
};

function policyFile(doc: unknown): string {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'hellwall-policy-')), 'policy.json');
  writeFileSync(file, typeof doc === 'string' ? doc : JSON.stringify(doc));
  return file;
}

t.test('a user token is refused an admin request, logged as a policy denial; an admin token is authorized', async (t) => {
  const h = await startHarness(t, { config: { policy: { file: policyFile(POLICY) } }, users: [ALICE, BOB] });
  const client = await h.connect();
  const alice = await h.login(client, ALICE);
  const bob = await h.login(client, BOB);
  const check = (token: string, request: string) => client.check({ token, mac: MAC, request });

  t.equal((await check(alice.token, 'inventory.read')).status, 'authorized');
  const denied = await check(alice.token, 'admin.users.list');
  t.same(Object.keys(denied).filter((k) => k !== 'id' && k !== 'code'), ['status'], 'unauthorized says nothing more [P-4.6]');
  t.equal(denied.status, 'unauthorized');
  const lines = h.logs.find({ event: 'token.check', outcome: 'denied', reason: 'policy' });
  t.ok(lines.length >= 1, 'the denial is logged');
  t.match(lines[0], { level: 30, request: 'admin.users.list', role: 'user', msg: 'token check denied by policy' });

  t.match(await check(bob.token, 'admin.users.list'), { status: 'authorized', user: { email: BOB.email, role: 'admin' } });
  t.equal((await check(bob.token, 'inventory.read')).status, 'authorized');
  t.equal((await check(alice.token, 'status.read')).status, 'authorized', 'a public request: any valid token');
  t.equal((await check(bob.token, 'billing.pay')).status, 'unauthorized', 'an unlisted request is denied by default');
  t.equal((await check('Awfer_hellwall_' + 'A'.repeat(43), 'status.read')).status, 'unauthorized', 'public still needs a valid token');
  t.equal((await check(alice.token, 'inventory.read')).status, 'authorized', 'a denial does not end the session');
});

t.test('policy.defaultDeny=false allows unlisted requests to every role', async (t) => {
  const h = await startHarness(t, { config: { policy: { file: policyFile(POLICY), defaultDeny: false } } });
  const client = await h.connect();
  const alice = await h.login(client);
  t.equal((await client.check({ token: alice.token, mac: MAC, request: 'billing.pay' })).status, 'authorized');
  t.equal((await client.check({ token: alice.token, mac: MAC, request: 'admin.x' })).status, 'unauthorized');
});

t.test('a forbidden request does not renew an expired token; an allowed one then still can', async (t) => {
  const h = await startHarness(t, { config: { policy: { file: policyFile(POLICY) } } });
  const client = await h.connect();
  const login = await h.login(client);
  h.clock.advance(HOUR);
  t.equal((await client.check({ token: login.token, mac: MAC, request: 'admin.x' })).status, 'unauthorized');
  t.equal(h.logs.find({ event: 'token.renew' }).length, 0, 'no rotation happened');
  const renewed = await client.check({ token: login.token, mac: MAC, request: 'inventory.read' });
  t.equal(renewed.status, 'renew');
  if (renewed.status !== 'renew') return;
  // Within the grace the old token yields the same successor, but only for requests the role may make.
  h.clock.advance(1000);
  t.equal((await client.check({ token: login.token, mac: MAC, request: 'admin.x' })).status, 'unauthorized');
  const again = await client.check({ token: login.token, mac: MAC, request: 'inventory.read' });
  t.equal(again.status === 'renew' && again.token, renewed.token, 'the session survived the denial in the grace');
  t.equal((await client.check({ token: renewed.token, mac: MAC, request: 'inventory.read' })).status, 'authorized');
});

t.test('policy denials are not failed checks for the per-address limit [P-2.8]', async (t) => {
  const limits = { ipPasscodeRequestsPerMinute: 1000, ipLoginsPerMinute: 1000, ipFailedChecksPerMinute: 2, freeFailures: 1000 };
  const h = await startHarness(t, { config: { policy: { file: policyFile(POLICY) }, limits } });
  const client = await h.connect();
  const login = await h.login(client);
  for (let i = 0; i < 5; i++) t.equal((await client.check({ token: login.token, mac: MAC, request: 'admin.x' })).status, 'unauthorized');
  t.equal((await client.check({ token: login.token, mac: MAC, request: 'inventory.read' })).status, 'authorized');
});

t.test('reload applies a changed policy to the next check; a malformed file keeps the previous policy', async (t) => {
  const file = policyFile(POLICY);
  const h = await startHarness(t, { config: { policy: { file } } });
  const client = await h.connect();
  const login = await h.login(client);
  const check = () => client.check({ token: login.token, mac: MAC, request: 'inventory.read' });
  t.equal((await check()).status, 'authorized');

  writeFileSync(file, JSON.stringify({ rules: [{ requests: ['inventory.*'], roles: ['admin'] }] }));
  t.equal(await h.app.reload(), true);
  t.equal(h.logs.find({ msg: 'policy reloaded' }).length, 1);
  t.equal((await check()).status, 'unauthorized', 'the decision cached under the old policy is gone');

  writeFileSync(file, JSON.stringify(POLICY));
  t.equal(await h.app.reload(), true);
  t.equal((await check()).status, 'authorized');

  writeFileSync(file, '{"rules": [{"requests": ["inventory.*"], "roles": ["admin"], "typo": true}]}');
  t.equal(await h.app.reload(), false, 'reload reports the failure');
  const [failed] = h.logs.find({ msg: 'policy reload failed; the previous policy stays in force' });
  t.match(failed, { level: 50, err: `invalid policy file ${file}: /rules/0 must NOT have additional properties: typo` });
  t.equal((await check()).status, 'authorized', 'the previous policy still applies');
  t.ok(h.logs.find({ msg: 'server keys reloaded' }).length >= 3, 'the key ring reloads even when the policy fails');

  const text = await h.app.metrics.render();
  t.equal(sample(text, 'hellwall_reloads_total{what="policy",outcome="ok"}'), 2);
  t.equal(sample(text, 'hellwall_reloads_total{what="policy",outcome="failed"}'), 1);
});

t.test('a malformed policy file stops the service from being built, naming the file and the problem', async (t) => {
  const file = policyFile({ roles: ['user'], rules: [{ requests: ['admin.*'], roles: ['admin'] }] });
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-test-'));
  const config = loadConfig({}, { dataDir, port: 0, ops: { enabled: false }, policy: { file } }, undefined);
  t.throws(() => buildApp({ config, log: createLogger('trace', new LogSink()) }), {
    name: 'PolicyError',
    message: `invalid policy file ${file}: /rules/0/roles: role admin is not declared in /roles`,
  });
});
