// `hellwall client login --face`: the image is read (or refused) before anything is sent.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { CAMERA_DEVICE, readFaceImage } from '../../src/cli/client-face.js';
import { runCli } from '../helpers/cli.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-face-cli-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(100, 7)]);
writeFileSync(path.join(dir, 'me.jpg'), jpeg);
writeFileSync(path.join(dir, 'me.png'), Buffer.from('89504e470d0a1a0a', 'hex'));
writeFileSync(path.join(dir, 'huge.jpg'), Buffer.concat([jpeg, Buffer.alloc(60_000)]));

t.test('a JPEG file becomes the base64 the server takes', async (t) => {
  t.equal(readFaceImage(path.join(dir, 'me.jpg')), jpeg.toString('base64'));
});

t.test('what cannot be sent is refused with a reason', async (t) => {
  t.throws(() => readFaceImage(path.join(dir, 'nope.jpg')), { name: 'UsageError', message: /nope\.jpg: no such file/ });
  t.throws(() => readFaceImage(path.join(dir, 'me.png')), { name: 'UsageError', message: /not a JPEG image/ });
  t.throws(() => readFaceImage(path.join(dir, 'huge.jpg')), { name: 'UsageError', message: /must fit in one frame/ });
});

t.test('camera capture says what is missing', async (t) => {
  // This machine (and CI) has neither ffmpeg nor a camera; where it has both, capture is tried.
  t.throws(() => readFaceImage('camera'), { name: 'CliError', message: new RegExp(`needs ffmpeg|no camera at ${CAMERA_DEVICE}|ffmpeg could not capture`) });
});

t.test('client login stops on a bad --face before asking for anything', async (t) => {
  const r = await runCli(['client', 'login', '--email', 'a@example.com', '--phone', '+15550100', '--passcode', 'K7M2QX', '--face', path.join(dir, 'me.png'), '--port', '1'], { HELLWALL_DATA_DIR: dir, HELLWALL_PASSWORD: 'x' });
  t.equal(r.code, 2);
  t.match(r.stderr, /--face .*me\.png: not a JPEG image/);
});
