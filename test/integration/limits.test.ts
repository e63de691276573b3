import t from 'tap';
import { frameBytes } from '../../src/codec/frame-encoder.js';
import { ALICE, MAC, startHarness, type Harness } from '../helpers/harness.js';
import { metricsText, sample } from '../helpers/http.js';
import { rawWithHeader, v1, v2Tcp4, v2Tcp6 } from '../helpers/proxy-headers.js';
import { header, within } from '../helpers/test-utils.js';

t.test('a connection idle for longer than idleTimeoutMs is closed, and logged', async (t) => {
  const h = await startHarness(t, { config: { idleTimeoutMs: 300 } });
  const client = await h.connect();
  t.equal((await client.hello()).status, 'ok');
  t.equal(await within(client.closed, 5000), undefined, 'the server closed the idle connection');
  t.equal(h.logs.find({ msg: 'idle timeout; closing connection' }).length, 1);
  const next = await h.connect();
  t.equal((await next.hello()).status, 'ok', 'new connections are served');
});

t.test('password hashing beyond the queue answers E_BUSY and token checks carry on', async (t) => {
  const h = await startHarness(t, { config: { passwords: { hashConcurrency: 1, hashQueueMax: 1 } } });
  const client = await h.connect();
  const burst = Array.from({ length: 6 }, (_, i) =>
    client.send({ code: 1, id: `b${i}`, email: ALICE.email, password: 'wrong password', mac: MAC }),
  );
  const hello = client.hello();
  const answers = await Promise.all(burst);
  const busy = answers.filter((a) => a.status === 'error' && a.error === 'E_BUSY');
  t.equal(answers.filter((a) => a.status === 'ok').length, 2, 'one hashing and one queued are served');
  t.equal(busy.length, 4, 'the rest are told to retry');
  t.ok(busy.every((a) => h.validate(a) === null && a.code === 1), 'E_BUSY is a well-formed error response');
  t.same(answers.map((a) => a.id), ['b0', 'b1', 'b2', 'b3', 'b4', 'b5'], 'still answered in order');
  t.equal((await hello).status, 'ok', 'the connection stays open');
});

t.test('shutdown answers requests already in flight, then closes connections', async (t) => {
  const h = await startHarness(t);
  const client = await h.connect();
  // A passcode request spends its time hashing: it is still in flight when shutdown starts.
  const inflight = client.requestPasscode({ email: ALICE.email, password: ALICE.password, mac: MAC });
  while (h.app.hasher.limiter.running === 0) await new Promise((r) => setImmediate(r));
  const closing = h.app.close(5000);
  t.same(await inflight, { id: '1', code: 1, status: 'ok', expiresInSeconds: 180 }, 'the in-flight request is answered');
  await closing;
  t.equal(await within(client.closed, 2000), undefined, 'then the connection is closed');
  t.equal(h.smtp.messages.length, 1, 'queued mail was delivered before the database closed');
  t.ok(h.logs.find({ msg: 'hellwall stopped' }).length === 1);
});

t.test('a write lock held by another process answers E_BUSY, changes nothing, and does not stall the server', async (t) => {
  const Database = (await import('better-sqlite3')).default;
  const path = await import('node:path');
  const h = await startHarness(t);
  const client = await h.connect();
  const bystander = await h.connect();
  const passcode = await h.requestPasscode(client);
  const login = await client.login({ email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode, mac: MAC });
  if (login.status !== 'ok') return t.fail('login failed');
  const passcode2 = await h.requestPasscode(client);

  const other = new Database(path.join(h.dataDir, 'hellwall.db'));
  other.exec('BEGIN IMMEDIATE');
  t.teardown(() => other.close());

  const started = Date.now();
  const busy = await client.login({ email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode: passcode2, mac: MAC });
  t.same(busy, { id: '4', code: 2, status: 'error', error: 'E_BUSY', message: 'server is busy; retry later' }, 'a login that must write is told to retry');
  t.equal((await bystander.hello()).status, 'ok', 'other connections are served meanwhile');
  t.ok(Date.now() - started < 3000, 'the server was not frozen for the old 5 s lock wait');
  other.exec('ROLLBACK');
  t.equal((await client.login({ email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode: passcode2, mac: MAC })).status, 'ok', 'the same passcode works once the lock is gone');

  other.exec('BEGIN IMMEDIATE');
  h.clock.advance(61_000);
  t.equal((await client.check({ token: login.token, mac: MAC, request: 'r' })).status, 'authorized', 'a check whose activity write is blocked still answers');
  h.clock.advance(3600_000);
  const renewal = await client.check({ token: login.token, mac: MAC, request: 'r' });
  t.equal(renewal.status === 'error' && renewal.error, 'E_BUSY', 'a renewal that cannot be stored is not answered with a token');

  other.exec('ROLLBACK');
  t.equal((await client.check({ token: login.token, mac: MAC, request: 'r' })).status, 'renew', 'the renewal goes through once the lock is gone');
  t.ok(h.logs.find({ msg: 'database busy' }).length >= 2, 'contention is logged');
});

t.test('connections per address are capped before any TLS work; other addresses are not affected', async (t) => {
  const { HellwallClient } = await import('../../src/client/client.js');
  const h = await startHarness(t, { config: { maxConnectionsPerIp: 2 } });
  const a = await h.connect();
  const b = await h.connect();
  await t.rejects(
    HellwallClient.connect({ host: '127.0.0.1', port: h.port, ca: h.ca, connectTimeoutMs: 3000 }),
    'a third connection from 127.0.0.1 is closed at once',
  );
  const other = await h.connect({ localAddress: '127.0.0.2' });
  t.equal((await other.hello()).status, 'ok', 'another address still connects');
  t.equal((await a.hello()).status, 'ok', 'the open ones are untouched');
  await b.close();
  await new Promise((r) => setTimeout(r, 50));
  const again = await h.connect();
  t.equal((await again.hello()).status, 'ok', 'a closed connection frees its slot');
  t.equal(h.logs.find({ msg: 'connections refused: too many open connections from one address', ip: '127.0.0.1' }).length, 1);
  t.match(await h.app.metrics.render(), /^hellwall_connections_refused_total\{reason="max_connections_per_ip"\} 1$/m);
  t.equal(h.logs.find({ msg: 'TLS handshake failed' }).length, 0, 'the refused socket never reached TLS');
});

t.test('a frame not completed within frameTimeoutMs of its first byte closes the connection [P-1.6]', async (t) => {
  const h = await startHarness(t, { config: { frameTimeoutMs: 400 } });
  const client = await h.connect();
  t.equal((await client.hello()).status, 'ok');
  // A header announcing 100 bytes, then a byte every 100 ms: progress, but the frame never ends in time.
  client.socket.write(Buffer.from([0, 0, 0, 100]));
  const trickle = setInterval(() => client.socket.writable && client.socket.write(Buffer.from(' ')), 100);
  t.teardown(() => clearInterval(trickle));
  const started = Date.now();
  t.equal(await within(client.closed, 5000), undefined, 'the server closed the connection');
  clearInterval(trickle);
  t.ok(Date.now() - started >= 350, 'not before the deadline');
  t.equal(h.logs.find({ msg: 'frame not completed in time; closing connection' }).length, 1, 'logged');
  t.match(await h.app.metrics.render(), /^hellwall_connections_refused_total\{reason="frame_timeout"\} 1$/m, 'counted');
});

t.test('slow but complete frames, and reads that end mid-frame, are not cut by the frame deadline', async (t) => {
  const { encodeFrame } = await import('../../src/codec/frame-encoder.js');
  const h = await startHarness(t, { config: { frameTimeoutMs: 300 } });
  const client = await h.connect();
  // Each write ends in the middle of the next frame, but every frame completes within 150 ms.
  const frames = Buffer.concat(Array.from({ length: 8 }, (_, i) => encodeFrame({ code: 0, id: `s${i}` })));
  const answers: Array<Promise<unknown>> = [];
  const cut = Math.floor(frames.length / 8);
  for (let i = 0; i < 8; i++) {
    answers.push(client.sendRaw(frames.subarray(i * cut, i === 7 ? frames.length : (i + 1) * cut)));
    await new Promise((r) => setTimeout(r, 120));
  }
  // sendRaw queued one waiter per write; the eight frames make eight answers.
  const got = (await Promise.all(answers)) as Array<{ id: string; status: string }>;
  t.same(got.map((a) => a.id), ['s0', 's1', 's2', 's3', 's4', 's5', 's6', 's7'], 'every frame answered, in order');
  t.equal(h.logs.find({ msg: 'frame not completed in time; closing connection' }).length, 0);
  t.equal((await client.hello()).status, 'ok', 'the connection is still open after about 1 s of slow frames');
});

// --- Issue 12: IPv6 grouping (item 6) and the buffered-bytes budget (item 10) ------------------
// Both failed on the code before: every IPv6 address of a /64 had its own connection cap, and
// partial frames had no global bound (about 156 KiB a connection, 3 GB at the old caps).

const TRUSTED = { proxy: { trusted: '127.0.0.1' } };
/** A client behind the trusted balancer on 127.0.0.1, as the PROXY header names it. */
const viaBalancer = async (h: Harness, proxyHeader: Buffer) =>
  h.connect({ socket: await rawWithHeader(h.port, proxyHeader), connectTimeoutMs: 3000 });
/** A client in 2001:db8:<net>::/64 (net: the third and fourth groups). */
const inNet = (net: [number, number], host: number[]): Buffer => v2Tcp6([0x2001, 0xdb8, ...net, ...host]);
const refusedFor = async (h: Harness, reason: string): Promise<number> =>
  sample(await metricsText(h.opsPort), `hellwall_connections_refused_total{reason="${reason}"}`) ?? 0;

t.test('IPv6 clients share the per-address cap per /64: distinct addresses in one /64 cannot multiply it', async (t) => {
  const h = await startHarness(t, { config: { ...TRUSTED, maxConnectionsPerIp: 2 } });
  const a = await viaBalancer(h, inNet([1, 2], [0, 0, 0, 1]));
  const b = await viaBalancer(h, inNet([1, 2], [0xffff, 0xffff, 0xffff, 0xffff]));
  t.equal((await a.hello()).status, 'ok');
  t.equal((await b.hello()).status, 'ok');
  await t.rejects(viaBalancer(h, inNet([1, 2], [0x1234, 0, 0, 3])), 'a third address in 2001:db8:1:2::/64 is refused');
  await t.rejects(viaBalancer(h, v1('TCP6', '2001:db8:1:2:0:0:0:9')), 'written as a v1 header too');
  const other = await viaBalancer(h, inNet([1, 3], [0, 0, 0, 1]));
  t.equal((await other.hello()).status, 'ok', 'the next /64 is another client');
  t.equal(await refusedFor(h, 'max_connections_per_ip'), 2, 'both refusals counted');
  const logged = h.logs.find({ msg: 'connections refused: too many open connections from one address', group: '2001:db8:1:2::/64' });
  t.equal(logged.length, 1, 'logged once (at most every 10 s), with the group');
  t.equal(logged[0]?.ip, '2001:db8:1:2:1234::3', 'and the address that was refused');

  await a.close();
  await new Promise((r) => setTimeout(r, 50));
  const again = await viaBalancer(h, inNet([1, 2], [0, 0, 0, 0x77]));
  t.equal((await again.hello()).status, 'ok', 'a closed connection frees its slot in the /64');
});

t.test('IPv4 and IPv4-mapped IPv6 clients are one client; limits.ipv6Prefix sets the IPv6 grouping', async (t) => {
  const h = await startHarness(t, { config: { ...TRUSTED, maxConnectionsPerIp: 2, limits: { ipv6Prefix: 48 } } });
  t.equal((await (await viaBalancer(h, v2Tcp4('203.0.113.7'))).hello()).status, 'ok');
  t.equal((await (await viaBalancer(h, v2Tcp6([0, 0, 0, 0, 0, 0xffff, 0xcb00, 0x7107]))).hello()).status, 'ok', '::ffff:203.0.113.7');
  await t.rejects(viaBalancer(h, v1('TCP4', '203.0.113.7')), 'the mapped address counted as 203.0.113.7');
  t.equal((await (await viaBalancer(h, inNet([1, 2], [0, 0, 0, 1]))).hello()).status, 'ok');
  t.equal((await (await viaBalancer(h, inNet([1, 3], [0, 0, 0, 1]))).hello()).status, 'ok');
  await t.rejects(viaBalancer(h, inNet([1, 0xffff], [0, 0, 0, 1])), 'with /48, 2001:db8:1:2:: and 2001:db8:1:ffff:: are one client');
  t.equal((await (await viaBalancer(h, inNet([2, 2], [0, 0, 0, 1]))).hello()).status, 'ok', 'the next /48 is not');
  t.equal(await refusedFor(h, 'max_connections_per_ip'), 2, 'both refusals counted');
  t.equal(h.logs.find({ msg: 'connections refused: too many open connections from one address', ip: '203.0.113.7' }).length, 1, 'the first logged');
});

t.test('limits.ipv6Prefix 128 keys each IPv6 address apart; the option is bounded 32..128', async (t) => {
  const { ConfigError, loadConfig } = await import('../../src/config.js');
  const h = await startHarness(t, { config: { ...TRUSTED, maxConnectionsPerIp: 1, limits: { ipv6Prefix: 128 } } });
  for (const host of [1, 2, 3]) t.equal((await (await viaBalancer(h, inNet([1, 2], [0, 0, 0, host]))).hello()).status, 'ok', `2001:db8:1:2::${host}`);
  await t.rejects(viaBalancer(h, inNet([1, 2], [0, 0, 0, 1])), 'the same address twice is refused');
  t.equal(loadConfig({}, {}, undefined).limits.ipv6Prefix, 64, 'default /64');
  t.equal(loadConfig({ HELLWALL_LIMITS_IPV6_PREFIX: '56' }, {}, undefined).limits.ipv6Prefix, 56, 'from the environment');
  t.throws(() => loadConfig({ HELLWALL_LIMITS_IPV6_PREFIX: '31' }, {}, undefined), new ConfigError('invalid option limits.ipv6Prefix (env HELLWALL_LIMITS_IPV6_PREFIX): must be at least 32'));
  t.throws(() => loadConfig({}, { limits: { ipv6Prefix: 129 } }, undefined), ConfigError);
});

/** The frame of a hello request padded with spaces to exactly `size` payload bytes. */
const paddedHello = (id: string, size: number): Buffer => {
  const json = JSON.stringify({ code: 0, id });
  return frameBytes(json + ' '.repeat(size - json.length));
};

t.test('connections holding most of a large frame run into maxBufferedBytes; the server stays within it and serves the rest [P-1.8]', async (t) => {
  const FRAME = 65536;
  const h = await startHarness(t, { config: { maxBufferedBytes: 4 * FRAME } });
  const bystander = await h.connect();
  const { token } = await h.login(bystander);
  // Eight clients, each sending all of a 64 KiB frame but its last byte: room for four.
  const hogs = await Promise.all(Array.from({ length: 8 }, () => h.connect()));
  const frames = hogs.map((_, i) => paddedHello(`big-${i}`, FRAME));
  for (const [i, c] of hogs.entries()) {
    await c.sendRaw(frames[i]!.subarray(0, -1), false);
    await new Promise((r) => setTimeout(r, 20));
  }
  for (let i = 0; i < 100 && (await refusedFor(h, 'buffer_budget')) < 4; i++) await new Promise((r) => setTimeout(r, 50));
  t.equal(await refusedFor(h, 'buffer_budget'), 4, 'four connections refused, counted');
  const open = [];
  for (const [i, c] of hogs.entries()) if ((await within(c.closed, 100)) === 'timeout') open.push(i);
  t.equal(open.length, 4, 'the four that fit are still open; the others were closed (without a message)');

  const lines = h.logs.find({ msg: 'connections closed: no room to buffer their partial frames (maxBufferedBytes)' });
  t.equal(lines.length, 1, 'one warning for the burst (at most one every 10 s)');
  t.equal(lines[0]?.level, 40, 'at warn');
  t.equal(lines[0]?.maxBufferedBytes, 4 * FRAME);
  t.ok((lines[0]?.bufferedBytes as number) <= 4 * FRAME, `the server held at most the budget (${String(lines[0]?.bufferedBytes)} bytes)`);
  t.equal(lines[0]?.frameBytes, FRAME, 'and says what did not fit');

  t.equal((await bystander.hello()).status, 'ok', 'an open connection is answered');
  t.equal((await bystander.check({ token, mac: MAC, request: 'r' })).status, 'authorized', 'token checks go on');
  const fresh = await h.connect();
  t.equal((await fresh.hello()).status, 'ok', 'a new connection is served');
  t.equal(await refusedFor(h, 'buffer_budget'), 4, 'small requests never need the budget');

  // The four that fit finish their frames and are answered; that gives the budget back.
  for (const i of open) {
    const answer = await hogs[i]!.sendRaw(frames[i]!.subarray(-1));
    t.same({ id: answer.id, status: answer.status }, { id: `big-${i}`, status: 'ok' }, `big-${i} is answered once complete`);
  }
  const late = await h.connect();
  await late.sendRaw(frames[0]!.subarray(0, 40_000), false);
  await new Promise((r) => setTimeout(r, 50));
  const answer = await late.sendRaw(frames[0]!.subarray(40_000));
  t.equal(answer.status, 'ok', 'with the budget free again, a large frame in pieces is served');
  t.equal(await refusedFor(h, 'buffer_budget'), 4);
});

t.test('a header alone reserves its frame: 4-byte headers cannot make the server allocate beyond the budget', async (t) => {
  const h = await startHarness(t, { config: { maxBufferedBytes: 2 * 65536 } });
  const clients = await Promise.all(Array.from({ length: 5 }, () => h.connect()));
  for (const c of clients) await c.sendRaw(header(65536), false);
  for (let i = 0; i < 100 && (await refusedFor(h, 'buffer_budget')) < 3; i++) await new Promise((r) => setTimeout(r, 50));
  t.equal(await refusedFor(h, 'buffer_budget'), 3, 'two headers fit, three are refused');
  t.equal((await (await h.connect()).hello()).status, 'ok');
});

t.test('maxBufferedBytes below maxFrameBytes stops start-up', async (t) => {
  const { ConfigError, loadConfig } = await import('../../src/config.js');
  t.throws(() => loadConfig({}, { maxBufferedBytes: 1000, maxFrameBytes: 2000 }, undefined), new ConfigError('invalid option maxBufferedBytes: must be at least maxFrameBytes'));
  t.equal(loadConfig({}, {}, undefined).maxBufferedBytes, 64 * 2 ** 20, 'default 64 MiB');
});
