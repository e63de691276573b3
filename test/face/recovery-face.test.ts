// Self-service recovery of an operator who has the face factor [P-4.18]–[P-4.20], [P-4.30]: each
// flow stands in for one lost factor only (ASVS 6.4.3), so the face must come too, and only theirs
// gets through. Over real TLS, on the real engine; the CLI's `client recovery --face` at the end.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import type { HellwallClient } from '../../src/client/client.js';
import { runCli } from '../helpers/cli.js';
import { cutFace, decodeSamples, faceSkip, jpeg64, loadAugment, requireFace, SAMPLE_BOXES } from '../helpers/face.js';
import { ALICE, MAC, startHarness, type Harness } from '../helpers/harness.js';
import { enrolTotp, mailMatching, recoveryPasscode, type Enrolled } from '../helpers/totp.js';
import { passcodeFrom } from '../helpers/smtp-sink.js';

const STEP = 30_000;
const NEW = 'a brand new passphrase for spring';
const NEW_MAC = '00:1a:2b:3c:4d:5f';
const skip = faceSkip();
if (skip && requireFace) t.fail(`HELLWALL_REQUIRE_FACE=1 but ${skip}`);


/** A fresh code from the authenticator: each step's code is used once, so the clock moves on first. */
function nextCode(h: Harness, totp: Enrolled): string {
  h.clock.advance(STEP);
  return totp.code();
}

/** passcode.request, the mail, passcode.auth with every factor given. */
async function login(h: Harness, client: HellwallClient, password: string, totp: string, face: string): Promise<{ status: string }> {
  const since = h.smtp.messages.length;
  const req = await client.requestPasscode({ email: ALICE.email, password, mac: MAC });
  if (req.status !== 'ok') return req;
  const passcode = passcodeFrom(await mailMatching(h, ALICE.email, since, /Subject: Your Hellwall passcode/));
  return client.send({ code: 2, email: ALICE.email, phone: ALICE.phone, password, passcode, mac: MAC, totp, face });
}

t.test('an operator with TOTP and face enrolled recovers only with their own face', { skip }, async (t) => {
  const aug = await loadAugment();
  const photo = decodeSamples(aug, [1]).get(1)!;
  const alice = cutFace(aug, photo, SAMPLE_BOXES[1]![0]!);
  const hers = jpeg64(aug, alice);
  const other = jpeg64(aug, cutFace(aug, photo, SAMPLE_BOXES[1]![1]!));
  // Each TOTP code is used once, so the fake clock moves a step per attempt and ends minutes ahead
  // of the real one, which the CLI below sends as clientTime: allow for that.
  const h = await startHarness(t, { config: { face: { enabled: true, workers: 1 }, auth: { maxClockSkewSeconds: 3600 } } });
  h.clock.now = Date.now();
  const client = await h.connect();
  const { token } = await h.login(client);
  const totp = await enrolTotp(h, client, token);
  t.match(await client.command('face.enroll', { token, mac: MAC, image: hers }), { status: 'ok', confirmed: false });
  t.match(await client.command('face.confirm', { token, mac: MAC, image: jpeg64(aug, aug.brightness(alice, 1.2)) }), { status: 'ok', confirmed: true });
  const hashBefore = (await h.app.store.findUserByEmail(ALICE.email))!.passwordHash;

  await t.test('recovery.password: refused without the face and with another face; nothing changes', async (t) => {
    const passcode = await recoveryPasscode(h, client, ALICE.email);
    const send = (face?: string) =>
      client.send({ code: 26, email: ALICE.email, passcode, mac: MAC, newPassword: NEW, totp: nextCode(h, totp), clientTime: h.clock.now, ...(face !== undefined && { face }) });
    t.match(await send(), { status: 'error', error: 'E_AUTH_FAILED', message: 'authentication failed' }, 'the passcode and TOTP alone');
    t.match(await send(other), { status: 'error', error: 'E_AUTH_FAILED', message: 'authentication failed' }, "another person's face");
    const grey = { width: 200, height: 200, data: new Uint8Array(200 * 200 * 3).fill(90) };
    t.match(await send(jpeg64(aug, grey)), { status: 'error', error: 'E_FACE_NONE' }, 'an image without a face has its own error');
    t.equal((await h.app.store.findUserByEmail(ALICE.email))!.passwordHash, hashBefore, 'the password is unchanged');
    t.match(await client.check({ token, mac: MAC, request: 'x.read' }), { status: 'authorized' }, 'no session ended');
    const failures = await h.auditRows({ action: 'recovery.password', outcome: 'failure' });
    t.ok(failures.some((r) => /"reason":"face"/.test(JSON.stringify(r.detail))), 'audited as a face failure');
    t.match(await login(h, client, ALICE.password, nextCode(h, totp), hers), { status: 'ok' }, 'the old password still logs in');
  });

  await t.test('recovery.totp and recovery.device: refused without the face, and nothing is spent', async (t) => {
    let passcode = await recoveryPasscode(h, client, ALICE.email);
    t.match(
      await client.send({ code: 27, email: ALICE.email, passcode, mac: MAC, password: ALICE.password, recoveryCode: totp.recoveryCodes[0], clientTime: h.clock.now }),
      { status: 'error', error: 'E_AUTH_FAILED' },
      'lost authenticator, without the face',
    );
    t.equal(await h.app.store.countRecoveryCodes(1), 10, 'the recovery code was not used up');
    t.ok((await h.app.store.listFactors(1)).some((f) => f.factor === 'totp' && f.confirmedAt !== null), 'the authenticator is still there');

    passcode = await recoveryPasscode(h, client, ALICE.email, NEW_MAC);
    const device = (face?: string) =>
      client.send({ code: 28, email: ALICE.email, passcode, mac: NEW_MAC, password: ALICE.password, totp: nextCode(h, totp), clientTime: h.clock.now, ...(face !== undefined && { face }) });
    t.match(await device(), { status: 'error', error: 'E_AUTH_FAILED' }, 'new device, without the face');
    t.match(await device(other), { status: 'error', error: 'E_AUTH_FAILED' }, "new device, with another person's face");
    t.equal(await h.app.store.getDevice(1, NEW_MAC), undefined, 'the new device is not registered');
    t.match(await device(hers), { status: 'ok' }, 'new device, with her face');
    t.match(await h.app.store.getDevice(1, NEW_MAC), { mac: NEW_MAC }, 'and now it is');
  });

  await t.test('recovery.password with her own face sets the new password', async (t) => {
    const passcode = await recoveryPasscode(h, client, ALICE.email);
    t.match(await client.send({ code: 26, email: ALICE.email, passcode, mac: MAC, newPassword: NEW, totp: nextCode(h, totp), face: hers, clientTime: h.clock.now }), {
      status: 'ok',
    });
    t.not((await h.app.store.findUserByEmail(ALICE.email))!.passwordHash, hashBefore, 'the password changed');
    t.match(await login(h, client, NEW, nextCode(h, totp), hers), { status: 'ok' }, 'the new password logs in');
  });

  await t.test('client recovery password --face: the CLI carries the face', async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-recovery-face-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(path.join(dir, 'me.jpg'), Buffer.from(hers, 'base64'));
    writeFileSync(path.join(dir, 'other.jpg'), Buffer.from(other, 'base64'));
    const env = { HOME: dir, HELLWALL_DATA_DIR: h.dataDir, HELLWALL_PORT: String(h.port), HELLWALL_NEW_PASSWORD: `${NEW} again` };
    const run = async (...more: string[]) => {
      const passcode = await recoveryPasscode(h, client, ALICE.email);
      return runCli(['client', 'recovery', 'password', '--email', ALICE.email, '--mac', MAC, '--passcode', passcode, '--totp', nextCode(h, totp), ...more], env);
    };
    const without = await run();
    t.equal(without.code, 1, 'refused without --face');
    t.match(without.stderr, /authentication failed \(E_AUTH_FAILED\)/);
    const wrong = await run('--face', path.join(dir, 'other.jpg'));
    t.equal(wrong.code, 1, "refused with another person's face");
    const bad = await runCli(['client', 'recovery', 'password', '--email', ALICE.email, '--passcode', 'K7M2QX', '--totp', '123456', '--face', path.join(dir, 'missing.jpg')], env);
    t.equal(bad.code, 2, 'a missing file stops it before anything is sent');
    t.match(bad.stderr, /--face .*missing\.jpg: no such file/);
    const done = await run('--face', path.join(dir, 'me.jpg'));
    t.equal(done.code, 0, done.stderr);
    t.match(done.stdout, /password changed; \d+ session\(s\) ended/);
    t.match(await login(h, client, `${NEW} again`, nextCode(h, totp), hers), { status: 'ok' }, 'the password set by the CLI logs in');
  });
});
