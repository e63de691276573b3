import t from 'tap';
import type { Actor } from '../../src/services/admin-service.js';
import { ALICE, BOB, buildKit, IP, type Kit, MAC, refusal, ROOT, SECOND, T0 } from '../helpers/services.js';

const CLI: Actor = { name: 'cli:test', auditReads: false };
const OTHER_MAC = '00:1a:2b:3c:4d:ff';
const newSignIns = (kit: Kit) => kit.mailer.sent.filter((m) => /New sign-in/.test(m.subject));

t.test('a first login records the device and address and mails the owner after the answer; a known one mails nothing', async (t) => {
  const kit = await buildKit(t, { config: { alerts: {} } });
  const alice = kit.users[ALICE.email]!;
  const first = await kit.login(ALICE, { device: 'laptop' });
  t.equal(newSignIns(kit).length, 0, 'no alert before the answer');
  await kit.mail.drain();
  const [mail] = newSignIns(kit);
  t.equal(newSignIns(kit).length, 1);
  t.equal(mail!.to, ALICE.email);
  t.match(mail!.text, `device ${MAC} ("laptop"), address ${IP}`);
  t.match(mail!.text, 'Neither this device nor this address');
  t.match(mail!.text, 'If this was not you');
  t.match(await kit.raw.listDevices(alice.id), [{ mac: MAC, name: 'laptop', firstSeenAt: T0, lastSeenAt: T0, lastIp: IP, registeredAt: null }]);
  const [row] = await kit.auditRows({ action: 'alert.new_device' });
  t.match(row, { outcome: 'success', userId: alice.id, ip: IP, mac: MAC, detail: { newDevice: true, newAddress: true, sessionId: first.id } });

  kit.clock.now += 60 * SECOND;
  await kit.login(ALICE);
  await kit.mail.drain();
  t.equal(newSignIns(kit).length, 1, 'the same device and address: no alert');
  t.match(await kit.raw.getDevice(alice.id, MAC), { firstSeenAt: T0, lastSeenAt: T0 + 60 * SECOND, name: 'laptop' });
});

t.test('a new MAC from a known address, or a known MAC from a new address group, mails the owner', async (t) => {
  const kit = await buildKit(t, { config: { alerts: {} } });
  await kit.login(ALICE);
  await kit.mail.drain();
  await kit.login(ALICE, { mac: OTHER_MAC });
  await kit.mail.drain();
  t.equal(newSignIns(kit).length, 2);
  t.match(newSignIns(kit)[1]!.text, /This device was not used with your account before/);
  await kit.login(ALICE, { ip: '198.51.100.7' });
  await kit.mail.drain();
  t.equal(newSignIns(kit).length, 3);
  t.match(newSignIns(kit)[2]!.text, /This address was not used with your account before/);
});

t.test('IPv6 addresses count by their network (limits.ipv6Prefix), as the rate limits do', async (t) => {
  const kit = await buildKit(t, { config: { alerts: {} } });
  await kit.login(ALICE, { ip: '2001:db8:1:2::10' });
  await kit.login(ALICE, { ip: '2001:db8:1:2:ffff::1' });
  await kit.mail.drain();
  t.equal(newSignIns(kit).length, 1, 'one /64: one alert');
  await kit.login(ALICE, { ip: '2001:db8:1:3::10' });
  await kit.mail.drain();
  t.equal(newSignIns(kit).length, 2, 'another /64: another');
});

t.test('the new-device alert switched off: the device is still recorded, nothing mailed or audited', async (t) => {
  const kit = await buildKit(t, { config: { alerts: { newDevice: false } } });
  await kit.login(ALICE);
  await kit.mail.drain();
  t.equal(newSignIns(kit).length, 0);
  t.equal((await kit.raw.listDevices(kit.users[ALICE.email]!.id)).length, 1);
  t.equal((await kit.auditRows({ action: 'alert.*' })).length, 0);
});

t.test('requireRegistered: an unregistered MAC fails like a wrong factor (audited with the real reason) until an admin registers it', async (t) => {
  const kit = await buildKit(t, { config: { alerts: {}, devices: { requireRegistered: true } } });
  const alice = kit.users[ALICE.email]!;
  await t.rejects(kit.login(ALICE), refusal('auth-failed', { message: 'authentication failed' }));
  const [failed] = await kit.auditRows({ action: 'login', outcome: 'failure' });
  t.match(failed!.detail, { reason: 'unregistered-device' });
  t.equal((await kit.raw.getPasscode(alice.id))!.attempts, 1, 'counted as a guess against the passcode');

  const view = await kit.devices.register(CLI, ALICE.email, MAC.toUpperCase().replace(/:/g, '-'), 'desk');
  t.match(view, { mac: MAC, name: 'desk', registered: true, registeredAt: T0, registeredBy: 'cli:test' });
  t.notOk('firstSeenAt' in view, 'never used yet');
  const ok = await kit.login(ALICE);
  t.ok(ok.token, 'a registered device logs in');
  await kit.mail.drain();
  t.equal(newSignIns(kit).length, 1, 'its first use is still a new sign-in');
  await t.rejects(kit.login(ALICE, { mac: OTHER_MAC }), refusal('auth-failed'), 'another MAC still fails');
});

t.test('requireRegisteredRoles applies the policy to those roles only', async (t) => {
  const kit = await buildKit(t, { config: { devices: { requireRegisteredRoles: 'admin, auditor' } } });
  t.ok(kit.devices.requiresRegistered('admin'));
  t.notOk(kit.devices.requiresRegistered('user'));
  await t.rejects(kit.login(ROOT), refusal('auth-failed'));
  t.ok((await kit.login(ALICE)).token, 'a user logs in from anywhere');
});

t.test('device.list and device.rename act on the caller\'s own devices only', async (t) => {
  const kit = await buildKit(t, { config: { alerts: {} } });
  const a = await kit.login(ALICE, { device: 'laptop' });
  const b = await kit.login(BOB);
  await kit.mail.drain();
  t.match(await kit.devices.list(a.caller, kit.log), [{ mac: MAC, name: 'laptop', registered: false, firstSeenAt: T0, lastIp: IP }]);
  t.match(await kit.devices.rename(a.caller, MAC, 'work laptop', kit.log), { mac: MAC, name: 'work laptop' });
  t.equal((await kit.devices.list(b.caller, kit.log))[0]!.name, undefined, "bob's device of the same MAC is his own");
  await t.rejects(kit.devices.rename(a.caller, OTHER_MAC, 'x', kit.log), refusal('not-found'));
  const rows = await kit.auditRows({ action: 'device.rename' });
  t.same(rows.map((r) => r.outcome), ['failure', 'success']);
  t.match(await kit.devices.rename(a.caller, MAC, null, kit.log), { mac: MAC });
  t.notOk('name' in (await kit.devices.list(a.caller, kit.log))[0]!, 'a null name removes it');
  await t.rejects(kit.devices.list({ ...a.caller, token: 'Awfer_hellwall_nope' }, kit.log), refusal('unauthenticated'));
});

t.test('admin: list, register, remove (ending the sessions on that device), each audited; refusals audited too', async (t) => {
  const kit = await buildKit(t, { config: { alerts: {} } });
  const root = await kit.login(ROOT);
  const actor = await kit.actor(root.caller, 'admin.user.devices');
  const onMac = await kit.login(ALICE);
  const onOther = await kit.login(ALICE, { mac: OTHER_MAC });
  await kit.mail.drain();
  t.same((await kit.devices.listFor(actor, ALICE.email)).map((d) => d.mac), [MAC, OTHER_MAC]);
  t.match(await kit.devices.register(actor, ALICE.email, OTHER_MAC, null), { mac: OTHER_MAC, registered: true, registeredBy: `admin:${ROOT.email}`, firstSeenAt: T0 });

  t.same(await kit.devices.remove(actor, ALICE.email, MAC), { sessionsEnded: 1 });
  t.match(await kit.raw.findSessionById(onMac.id), { revokeReason: 'device-removed' });
  t.match(await kit.raw.findSessionById(onOther.id), { revokedAt: null });
  t.equal((await kit.tokens.check({ ...onMac.caller, request: 'x' }, kit.log)).status, 'unauthorized', 'its token is refused at once');
  t.same((await kit.devices.listFor(actor, ALICE.email)).map((d) => d.mac), [OTHER_MAC]);

  await t.rejects(kit.devices.remove(actor, ALICE.email, MAC), refusal('not-found'));
  await t.rejects(kit.devices.register(actor, 'nobody@example.com', MAC), refusal('not-found'));
  await t.rejects(kit.devices.register(actor, ALICE.email, 'not-a-mac'), refusal('invalid'));
  const rows = await kit.auditRows({ action: 'admin.*' });
  const of = (action: string) => rows.filter((r) => r.action === action).map((r) => r.outcome);
  t.same(of('admin.user.devices'), ['success', 'success']);
  t.same(of('admin.device.register'), ['failure', 'failure', 'success']);
  t.same(of('admin.device.remove'), ['failure', 'success']);
  t.match(rows.find((r) => r.action === 'admin.device.remove' && r.outcome === 'success'), { actor: `admin:${ROOT.email}`, email: ALICE.email, detail: { device: MAC, sessionsEnded: 1 } });
});

t.test('a device recording that fails never fails the login', async (t) => {
  const kit = await buildKit(t, {
    config: { alerts: {} },
    wrap: (store) => Object.assign(Object.create(store), { recordDeviceLogin: () => Promise.reject(new Error('disk full')) }),
  });
  const ok = await kit.login(ALICE);
  t.ok(ok.token);
  await kit.mail.drain();
  t.equal(newSignIns(kit).length, 0);
  t.ok(kit.logs.lines.some((l) => l.event === 'device.record' && /disk full/.test(String(l.err))), 'logged');
});
