import type net from 'node:net';
import t from 'tap';
import { metricsText } from '../helpers/http.js';
import type { HellwallClient } from '../../src/client/client.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { MAC, startHarness, type Harness } from '../helpers/harness.js';
import { closed, rawWithHeader as rawAt, v1, v2, v2Tcp4, v2Tcp6 } from '../helpers/proxy-headers.js';
import { within } from '../helpers/test-utils.js';

const TRUSTED = { proxy: { trusted: '127.0.0.1' } };
const rawWithHeader = (h: Harness, header: Buffer, localAddress?: string): Promise<net.Socket> => rawAt(h.port, header, localAddress);

/** A client whose connection starts with `header`, as if a balancer had forwarded it. */
async function viaBalancer(h: Harness, header: Buffer, localAddress?: string): Promise<HellwallClient> {
  return h.connect({ socket: await rawWithHeader(h, header, localAddress), connectTimeoutMs: 3000 });
}

function refused(text: string, reason: string): number {
  const series = `hellwall_connections_refused_total{reason="${reason}"}`;
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

const check = async (client: HellwallClient, token: string): Promise<string> => (await client.check({ token, mac: MAC, request: 'r' })).status;

t.test('behind a trusted balancer, a v1 header names the client the token is bound to', async (t) => {
  const h = await startHarness(t, { config: TRUSTED });
  const client = await viaBalancer(h, v1('TCP4', '203.0.113.7'));
  const login = await h.login(client);
  t.equal(await check(client, login.token), 'authorized');

  const again = await viaBalancer(h, v1('TCP4', '203.0.113.7'));
  t.equal(await check(again, login.token), 'authorized', 'another connection for the same client');
  const v2same = await viaBalancer(h, v2Tcp4('203.0.113.7'));
  t.equal(await check(v2same, login.token), 'authorized', 'v1 and v2 name the same address alike');
  const mapped = await viaBalancer(h, v2Tcp6([0, 0, 0, 0, 0, 0xffff, 0xcb00, 0x7107]));
  t.equal(await check(mapped, login.token), 'authorized', 'an IPv4-mapped IPv6 client is the IPv4 client [P-3.4]');
  const other = await viaBalancer(h, v1('TCP4', '203.0.113.8'));
  t.equal(await check(other, login.token), 'unauthorized', 'another client behind the same balancer');

  const open = h.logs.find({ msg: 'connection open', ip: '203.0.113.7', via: '127.0.0.1' });
  t.ok(open.length >= 3, 'the connection logger has the client as ip and the balancer as via');
  t.equal(h.logs.find({ event: 'login', outcome: 'success', ip: '203.0.113.7', via: '127.0.0.1' }).length, 1, 'and so does the login event');

  t.ok(await h.app.reload(), 'a certificate reload (SIGHUP) with the PROXY front');
  const afterReload = await viaBalancer(h, v1('TCP4', '203.0.113.7'));
  t.equal(await check(afterReload, login.token), 'authorized', 'new connections are still served');
});

t.test('v2 over IPv6: the binding follows the header, whatever form a v1 header writes the address in', async (t) => {
  const h = await startHarness(t, { config: TRUSTED });
  const client = await viaBalancer(h, v2Tcp6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 7]));
  const login = await h.login(client);
  t.equal(await check(client, login.token), 'authorized');
  t.equal(await check(await viaBalancer(h, v2Tcp6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 7])), login.token), 'authorized');
  t.equal(await check(await viaBalancer(h, v1('TCP6', '2001:DB8:0000:0:0:0:0:7')), login.token), 'authorized', 'canonicalized like a socket address');
  t.equal(await check(await viaBalancer(h, v2Tcp6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 8])), login.token), 'unauthorized', 'another IPv6 client');
  t.ok(h.logs.find({ msg: 'connection open', ip: '2001:db8::7', via: '127.0.0.1' }).length >= 2);
});

t.test('v2 LOCAL and v1 UNKNOWN keep the balancer address', async (t) => {
  const h = await startHarness(t, { config: TRUSTED });
  const local = await viaBalancer(h, v2('local', 0x00));
  const login = await h.login(local);
  t.equal(await check(local, login.token), 'authorized');
  t.equal(await check(await viaBalancer(h, v1('TCP4', '127.0.0.1')), login.token), 'authorized', 'bound to 127.0.0.1, the socket address');
  t.equal(await check(await viaBalancer(h, Buffer.from('PROXY UNKNOWN\r\n')), login.token), 'authorized', 'UNKNOWN: the socket address too');
  t.equal(await check(await viaBalancer(h, v2('proxy', 0x00)), login.token), 'authorized', 'PROXY UNSPEC: the socket address too');
  t.equal(await check(await viaBalancer(h, v1('TCP4', '203.0.113.7')), login.token), 'unauthorized');
  t.equal(h.logs.find({ msg: 'PROXY header names no client; using the peer address' }).length, 3);
});

t.test('a peer that is not trusted cannot name an address: its PROXY header fails the TLS handshake', async (t) => {
  const h = await startHarness(t, { config: TRUSTED });
  await t.rejects(viaBalancer(h, v1('TCP4', '203.0.113.7'), '127.0.0.2'), 'spoofing from 127.0.0.2 fails');
  await t.rejects(viaBalancer(h, v2Tcp4('203.0.113.7'), '127.0.0.2'), 'with v2 as well');

  const direct = await h.connect({ localAddress: '127.0.0.2' });
  const login = await h.login(direct);
  t.equal(await check(direct, login.token), 'authorized', 'plain TLS from an untrusted peer is served');
  t.equal(await check(await viaBalancer(h, v1('TCP4', '127.0.0.2')), login.token), 'authorized', 'bound to its own address, 127.0.0.2');
  t.equal(await check(await viaBalancer(h, v1('TCP4', '203.0.113.7')), login.token), 'unauthorized');
  t.equal(h.logs.find({ msg: 'connection open', ip: '127.0.0.2' }).filter((l) => l.via === undefined).length, 1, 'no via for the direct connection');

  const body = await metricsText(h.opsPort);
  t.equal(refused(body, 'tls_handshake'), 2, 'the spoofing attempts are failed handshakes');
  t.equal(refused(body, 'proxy_header'), 0, 'not PROXY refusals: the header was never parsed');
});

t.test('a trusted peer with no valid header is closed, logged and counted', async (t) => {
  const h = await startHarness(t, { config: { ...TRUSTED, handshakeTimeoutMs: 300 } });
  const started = Date.now();
  const closes: Array<Promise<unknown>> = [];

  const garbage = await rawWithHeader(h, Buffer.from('GET / HTTP/1.0\r\n\r\n'));
  closes.push(closed(garbage));
  const malformed = await rawWithHeader(h, Buffer.from('PROXY TCP4 203.0.113.7 127.0.0.1 99999 7443\r\n'));
  closes.push(closed(malformed));
  const truncated = await rawWithHeader(h, Buffer.from('PROXY TCP4 203.0'));
  truncated.end();
  closes.push(closed(truncated));
  const silent = await rawWithHeader(h, Buffer.alloc(0));
  closes.push(closed(silent));
  const slow = 'PROXY UNKNOWN ' + 'x'.repeat(90);
  const trickle = await rawWithHeader(h, Buffer.from(slow[0]!));
  // A valid header one byte every 100 ms would keep an idle timer from ever firing; the deadline still does.
  let sent = 1;
  const dribble = setInterval(() => trickle.writable && trickle.write(slow[sent++]!), 100);
  t.teardown(() => clearInterval(dribble));
  closes.push(closed(trickle));
  await t.rejects(h.connect({ connectTimeoutMs: 3000 }), 'TLS straight from the trusted address: no header, refused');

  t.not(await within(Promise.all(closes), 5000), 'timeout', 'every such connection was closed');
  clearInterval(dribble);
  t.ok(Date.now() - started < 3000, 'within about the handshake timeout');

  const lines = h.logs.find({ msg: 'PROXY header refused; closing connection', ip: '127.0.0.1' });
  t.same(
    lines.map((l) => l.reason).sort(),
    ['bad-port', 'not-proxy', 'not-proxy', 'timeout', 'timeout', 'truncated'],
    'each logged at info with the peer and the reason',
  );
  t.ok(lines.every((l) => l.level === 30));
  t.equal(refused(await metricsText(h.opsPort), 'proxy_header'), 6);

  // A balancer's TCP health check connects and closes without a byte: not an error.
  const probe = await rawWithHeader(h, Buffer.alloc(0));
  probe.end();
  await closed(probe);
  t.equal(refused(await metricsText(h.opsPort), 'proxy_header'), 6, 'an empty connection is not counted');
  t.equal(h.logs.find({ msg: 'connection closed before a PROXY header' }).length, 1, 'only noted at debug');

  const fine = await viaBalancer(h, v1('TCP4', '203.0.113.7'));
  t.equal((await fine.hello()).status, 'ok', 'the listener serves on');
});

t.test('after the header, the TLS handshake timeout still applies', async (t) => {
  const h = await startHarness(t, { config: { ...TRUSTED, handshakeTimeoutMs: 300 } });
  const stalled = await rawWithHeader(h, v1('TCP4', '203.0.113.7'));
  t.not(await within(closed(stalled), 3000), 'timeout', 'closed by the TLS handshake timeout');
  const body = await metricsText(h.opsPort);
  t.equal(refused(body, 'tls_handshake'), 1);
  t.equal(refused(body, 'proxy_header'), 0);
  t.equal(h.logs.find({ msg: 'TLS handshake failed', ip: '203.0.113.7', via: '127.0.0.1' }).length, 1, 'logged with the client the header named');
});

t.test('maxConnections applies in front of the header', async (t) => {
  const h = await startHarness(t, { config: { ...TRUSTED, maxConnections: 1 } });
  const first = await viaBalancer(h, v1('TCP4', '203.0.113.7'));
  await t.rejects(viaBalancer(h, v1('TCP4', '203.0.113.8')), 'the second connection is dropped');
  t.equal((await first.hello()).status, 'ok');
  t.equal(refused(await metricsText(h.opsPort), 'max_connections'), 1);
  t.equal(h.logs.find({ msg: 'connections refused: too many open connections' }).length, 1);
});

t.test('shutdown does not wait for a header that is still coming', async (t) => {
  const h = await startHarness(t, { config: TRUSTED });
  const client = await viaBalancer(h, v1('TCP4', '203.0.113.7'));
  t.equal((await client.hello()).status, 'ok');
  const pending = await rawWithHeader(h, Buffer.from('PROXY TCP4 '));
  const pendingClosed = closed(pending);
  await new Promise((r) => setTimeout(r, 50));
  const started = Date.now();
  await h.app.close(3000);
  t.ok(Date.now() - started < 1500, 'closed without waiting out the header deadline');
  t.not(await within(pendingClosed, 1000), 'timeout', 'the half-sent header connection was cut');
  t.not(await within(client.closed, 1000), 'timeout');
});

t.test('with PROXY protocol off, a PROXY header is just a failed handshake', async (t) => {
  const h = await startHarness(t, { config: { handshakeTimeoutMs: 300 } });
  await t.rejects(viaBalancer(h, v1('TCP4', '203.0.113.7')));
  await t.rejects(viaBalancer(h, v2Tcp4('203.0.113.7')));
  // The handshake timeout closes a silent connection here too (Node alone would leave it open).
  const silent = await rawWithHeader(h, Buffer.alloc(0));
  t.not(await within(closed(silent), 3000), 'timeout', 'a silent connection is closed');
  const body = await metricsText(h.opsPort);
  t.equal(refused(body, 'tls_handshake'), 3);
  t.equal(refused(body, 'proxy_header'), 0);
  t.equal((await (await h.connect()).hello()).status, 'ok');
});

t.test('an invalid proxy.trusted stops start-up, naming the option', async (t) => {
  t.throws(() => loadConfig({}, { proxy: { trusted: '10.0.0.0/33' } }, undefined), new ConfigError("invalid option proxy.trusted: '10.0.0.0/33' is not an IPv4 or IPv6 address or CIDR prefix (e.g. 10.0.0.0/8, 192.0.2.7, fd00::/8)"));
  t.throws(() => loadConfig({ HELLWALL_PROXY_TRUSTED: '10.0.0.1, lb.internal' }, {}, undefined), { name: 'ConfigError', message: /^invalid option proxy\.trusted: 'lb\.internal'/ });
  t.equal(loadConfig({ HELLWALL_PROXY_TRUSTED: '10.0.0.0/8, fd00::/8' }, {}, undefined).proxy.trusted, '10.0.0.0/8, fd00::/8');
  t.equal(loadConfig({}, {}, undefined).proxy.trusted, '', 'off by default');
});
