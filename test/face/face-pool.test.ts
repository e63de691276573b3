import t from 'tap';
import { ServiceError } from '../../src/errors.js';
import { cutFace, decodeSamples, faceSkip, loadAugment, requireFace, SAMPLE_BOXES, startPool } from '../helpers/face.js';

const skip = faceSkip();
if (skip && requireFace) t.fail(`HELLWALL_REQUIRE_FACE=1 but ${skip}`);

t.test('the face pool', { skip }, async (t) => {
  const aug = await loadAugment();
  const photos = decodeSamples(aug, [1, 4]);
  const one = cutFace(aug, photos.get(1)!, SAMPLE_BOXES[1]![0]!);
  const oneJpeg = aug.encodeJpeg(one, 85);
  const pool = await startPool(t, { workers: 1, queueMax: 1 });

  await t.test('describes the one face in an image as 128 numbers, off the event loop', async (t) => {
    // Counted while the inference runs: were it on this thread, no turn could happen meanwhile.
    let turns = 0;
    let running = true;
    const spin = (): void => {
      turns++;
      if (running) setImmediate(spin);
    };
    setImmediate(spin);
    const result = await pool.describe(oneJpeg);
    running = false;
    t.equal(result.ok, true);
    if (result.ok) {
      t.equal(result.descriptor.length, 128);
      t.ok(result.descriptor.every((v) => Number.isFinite(v)));
    }
    t.ok(turns > 20, `the event loop turned ${turns} times during one inference`);
  });

  await t.test('refuses what is not a JPEG, and a corrupt one', async (t) => {
    t.match(await pool.describe(Buffer.from('not an image at all')), { ok: false, code: 'not_jpeg' }, 'plain text');
    const truncated = await pool.describe(oneJpeg.subarray(0, oneJpeg.length >> 2));
    t.match(truncated, { ok: false, code: 'not_jpeg' }, 'cut short');
    const png = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
    t.match(await pool.describe(png), { ok: false, code: 'not_jpeg' }, 'a PNG header');
  });

  await t.test('refuses an image with no face', async (t) => {
    const grey = { width: 240, height: 240, data: new Uint8Array(240 * 240 * 3).fill(128) };
    t.match(await pool.describe(aug.encodeJpeg(grey, 80)), { ok: false, code: 'no_face' });
  });

  await t.test('refuses an image with two faces', async (t) => {
    const two = aug.crop(photos.get(4)!, 600, 0, 620, 460);
    t.match(await pool.describe(aug.encodeJpeg(two, 85)), { ok: false, code: 'several_faces' });
  });

  await t.test('refuses a face smaller than the minimum', async (t) => {
    t.match(await pool.describe(aug.encodeJpeg(aug.scale(one, 0.33), 90)), { ok: false, code: 'face_too_small' });
  });

  await t.test('answers busy at once when the queue is full', async (t) => {
    // One worker, a queue of one: the first runs, the second waits, the third is refused.
    const first = pool.describe(oneJpeg);
    const second = pool.describe(oneJpeg);
    const third = pool.describe(oneJpeg);
    await t.rejects(third, new ServiceError('busy', 'face verification is busy; retry later'));
    t.match(pool.load, { queued: 1, running: 1, workers: 1 });
    t.match(await first, { ok: true });
    t.match(await second, { ok: true });
    t.match(pool.load, { queued: 0, running: 0 });
  });
});
