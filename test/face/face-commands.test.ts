// face.enroll (40), face.confirm (41) and face.remove (42) over real TLS, on the real engine.
import t from 'tap';
import { ALICE, startHarness, type Harness } from '../helpers/harness.js';
import { cutFace, decodeSamples, faceSkip, jpeg64, loadAugment, requireFace, SAMPLE_BOXES } from '../helpers/face.js';
import type { HellwallClient } from '../../src/client/client.js';

const MAC = '00:1a:2b:3c:4d:5e';
const ALICE_PHONE = ALICE.phone;
const ALICE_PASSWORD = ALICE.password;
const skip = faceSkip();
if (skip && requireFace) t.fail(`HELLWALL_REQUIRE_FACE=1 but ${skip}`);


/** The response without its echoed `id`, to compare whole. */
function body(res: object): object {
  const { id: _id, ...rest } = res as { id?: string };
  return rest;
}

async function session(h: Harness): Promise<{ client: HellwallClient; token: string }> {
  const client = await h.connect();
  const login = await h.login(client);
  return { client, token: login.token };
}

t.test('a server without the face factor answers E_FACE_UNAVAILABLE', async (t) => {
  const h = await startHarness(t);
  const { client, token } = await session(h);
  const res = await client.command('face.enroll', { token, mac: MAC, image: Buffer.from('not even a picture').toString('base64') });
  t.match(res, { code: 40, status: 'error', error: 'E_FACE_UNAVAILABLE' });
});

t.test('face enrolment, confirmation, refusals and removal over the wire', { skip }, async (t) => {
  const aug = await loadAugment();
  const photos = decodeSamples(aug, [1, 4]);
  const alice = cutFace(aug, photos.get(1)!, SAMPLE_BOXES[1]![0]!);
  const other = cutFace(aug, photos.get(1)!, SAMPLE_BOXES[1]![1]!);
  const h = await startHarness(t, { config: { face: { enabled: true, workers: 1 } } });
  const { client, token } = await session(h);
  const send = (name: 'face.enroll' | 'face.confirm' | 'face.remove', image: string) => client.command(name, { token, mac: MAC, image });
  const secretRow = async () => (await h.app.store.getSecret(1, 'face')) ?? null;

  await t.test('each unusable image is its own error, and nothing is stored', async (t) => {
    t.match(await send('face.enroll', Buffer.from('hello').toString('base64')), { code: 40, error: 'E_FACE_IMAGE' });
    const grey = { width: 200, height: 200, data: new Uint8Array(200 * 200 * 3).fill(90) };
    t.match(await send('face.enroll', jpeg64(aug, grey)), { code: 40, error: 'E_FACE_NONE' });
    t.match(await send('face.enroll', jpeg64(aug, aug.scale(aug.crop(photos.get(4)!, 600, 0, 620, 460), 0.7))), { code: 40, error: 'E_FACE_SEVERAL' });
    t.match(await send('face.enroll', jpeg64(aug, aug.scale(alice, 0.33))), { code: 40, error: 'E_FACE_TOO_SMALL' });
    t.equal(await secretRow(), null);
  });

  await t.test('enrolment is pending until a second image of the same face confirms it', async (t) => {
    t.match(await send('face.enroll', jpeg64(aug, alice)), { code: 40, status: 'ok', confirmed: false });
    const row = await secretRow();
    // Sealed: version, nonce, tag, then 128 float32s; the plain descriptor is nowhere in the row.
    t.equal(row?.sealed.length, 1 + 12 + 16 + 512);
    t.match(await send('face.confirm', jpeg64(aug, other)), { code: 41, status: 'error', error: 'E_AUTH_FAILED', message: 'authentication failed' });
    const confirm = await send('face.confirm', jpeg64(aug, aug.brightness(alice, 1.2)));
    t.same(body(confirm), { code: 41, status: 'ok', confirmed: true }, 'the answer says nothing of how close it was');
    t.match(await send('face.enroll', jpeg64(aug, alice)), { code: 40, error: 'E_CONFLICT' }, 'no re-enrolment over a confirmed face');
  });

  await t.test('login then needs the face, and only the right one opens a session', async (t) => {
    const passcode = await h.requestPasscode(client);
    const auth = (face?: string) =>
      client.command('passcode.auth', { email: 'alice@example.com', phone: ALICE_PHONE, password: ALICE_PASSWORD, passcode, mac: MAC, ...(face !== undefined && { face }) });
    t.match(await auth(), { code: 2, error: 'E_AUTH_FAILED' }, 'without the face');
    t.match(await auth(jpeg64(aug, other)), { code: 2, error: 'E_AUTH_FAILED', message: 'authentication failed' }, 'with another face');
    const grey = { width: 200, height: 200, data: new Uint8Array(200 * 200 * 3).fill(90) };
    t.match(await auth(jpeg64(aug, grey)), { code: 2, error: 'E_FACE_NONE' }, 'with no face at all');
    t.match(await auth(jpeg64(aug, aug.rotate(alice, 5))), { code: 2, status: 'ok' }, 'with hers');
  });

  await t.test('removal needs the face itself', async (t) => {
    t.match(await send('face.remove', jpeg64(aug, other)), { code: 42, error: 'E_AUTH_FAILED' });
    t.not(await secretRow(), null);
    t.same(body(await send('face.remove', jpeg64(aug, alice))), { code: 42, status: 'ok', removed: true });
    t.equal(await secretRow(), null);
    t.same(body(await send('face.remove', jpeg64(aug, alice))), { code: 42, status: 'ok', removed: false });
  });

  await t.test('the template goes with the account', async (t) => {
    t.match(await send('face.enroll', jpeg64(aug, alice)), { status: 'ok' });
    t.not(await secretRow(), null);
    await h.app.store.deleteUser(1);
    t.equal(await secretRow(), null);
  });

  await t.test('no image and no template reaches the audit trail or the log', async (t) => {
    const image = jpeg64(aug, alice).slice(0, 40);
    const rows = await h.auditRows();
    t.ok(rows.some((r) => r.action === 'face.confirm' && r.outcome === 'success'));
    t.notOk(JSON.stringify(rows).includes(image));
    t.notOk(h.logs.text.includes(image));
  });
});
