import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CliError, EXIT, UsageError } from './errors.js';

/** The camera `--face camera` captures from (Linux V4L2). */
export const CAMERA_DEVICE = '/dev/video0';

/**
 * `--face`: a JPEG file, or `camera` for one frame from the camera through ffmpeg. Answers the
 * image in base64 as `passcode.auth` and the face commands take it. The size check here is only a
 * friendlier message: the server's frame limit decides.
 */
export function readFaceImage(spec: string, maxBytes = 47 * 1024): string {
  const bytes = spec === 'camera' ? captureFrame() : readFile(spec);
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) throw new UsageError(`--face ${spec}: not a JPEG image`);
  if (bytes.length > maxBytes) {
    throw new UsageError(`--face ${spec}: ${bytes.length} bytes; a face image must fit in one frame (about ${maxBytes} bytes with the default 64 KiB frame): crop it to the face or lower its JPEG quality`);
  }
  return bytes.toString('base64');
}

function readFile(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new UsageError(`--face ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
}

function onPath(program: string): boolean {
  return (process.env.PATH ?? '').split(path.delimiter).some((dir) => dir && existsSync(path.join(dir, program)));
}

/** One frame from the camera, as JPEG; a clear refusal where there is no ffmpeg or no camera. */
function captureFrame(): Buffer {
  if (!onPath('ffmpeg')) throw new CliError('--face camera needs ffmpeg on the PATH (e.g. apt-get install ffmpeg); or give a JPEG file: --face photo.jpg', EXIT.usage);
  if (!existsSync(CAMERA_DEVICE)) throw new CliError(`--face camera: no camera at ${CAMERA_DEVICE}; give a JPEG file instead: --face photo.jpg`, EXIT.usage);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-face-'));
  const out = path.join(dir, 'face.jpg');
  try {
    // One frame at 640x480, quality 5 (ffmpeg's 2-31 scale): a face crop well inside one frame.
    execFileSync('ffmpeg', ['-loglevel', 'error', '-f', 'v4l2', '-video_size', '640x480', '-i', CAMERA_DEVICE, '-frames:v', '1', '-q:v', '5', out], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 15_000 });
    return readFileSync(out);
  } catch (err) {
    throw new CliError(`--face camera: ffmpeg could not capture a frame: ${(err as Error).message.split('\n')[0]}`, EXIT.usage);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
