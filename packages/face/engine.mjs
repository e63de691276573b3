// The face engine: JPEG bytes in, one 128-d descriptor (or a refusal) out.
// It runs inside a worker thread (see worker.mjs); it lives in this package so that its imports
// resolve against this package's own node_modules, which the core install never carries.
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);

/** Refusal codes; the server maps each to its own error kind. */
export const FACE_REFUSALS = Object.freeze(['not_jpeg', 'too_large', 'no_face', 'several_faces', 'face_too_small']);

class Refusal extends Error {
  constructor(code) {
    super(code);
    this.code = code;
  }
}

/**
 * Load TensorFlow.js on its WASM backend and the three models face verification needs, all from
 * files inside this package: the WASM binaries from tfjs-backend-wasm's dist/ and the weights from
 * face-api's model/ (never the CDN its demo uses; this machine has no network).
 * @param {{ minConfidence: number, minFacePixels: number, maxPixels: number, maxSide: number }} opts
 */
export async function loadEngine(opts) {
  const tf = require('@tensorflow/tfjs');
  const wasm = require('@tensorflow/tfjs-backend-wasm');
  const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
  const jpeg = require('jpeg-js');
  const wasmDir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm')) + path.sep;
  const modelDir = path.join(path.dirname(require.resolve('@vladmandic/face-api/package.json')), 'model');
  // One WASM thread per engine: the pool already runs one engine per worker, and emscripten's own
  // pthreads would compete with them for the same cores.
  wasm.setThreadsCount?.(1);
  wasm.setWasmPaths(wasmDir, false);
  await tf.setBackend('wasm');
  await tf.ready();
  tf.env().set('PROD', true);
  await faceapi.nets.ssdMobilenetv1.loadFromDisk(modelDir);
  await faceapi.nets.faceLandmark68Net.loadFromDisk(modelDir);
  await faceapi.nets.faceRecognitionNet.loadFromDisk(modelDir);
  // maxResults 2: one face is the only acceptable answer, so a second detection is all we need to
  // refuse, and descriptors are never computed for a whole crowd.
  const detector = new faceapi.SsdMobilenetv1Options({ minConfidence: opts.minConfidence, maxResults: 2 });
  const crowd = new faceapi.SsdMobilenetv1Options({ minConfidence: opts.minConfidence, maxResults: 50 });

  function decode(bytes) {
    // SOI marker first: anything else is refused before the decoder spends time on it.
    if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) throw new Refusal('not_jpeg');
    let img;
    try {
      img = jpeg.decode(bytes, {
        useTArray: true,
        formatAsRGBA: false,
        tolerantDecoding: false,
        maxResolutionInMP: opts.maxPixels / 1e6,
        maxMemoryUsageInMB: 256,
      });
    } catch (err) {
      throw new Refusal(/limit exceeded/.test(String(err?.message)) ? 'too_large' : 'not_jpeg');
    }
    if (!img || !img.width || !img.height || img.data.length !== img.width * img.height * 3) throw new Refusal('not_jpeg');
    return img;
  }

  function toTensor(img) {
    return tf.tidy(() => {
      const t = tf.tensor3d(img.data, [img.height, img.width, 3], 'int32');
      const side = Math.max(img.width, img.height);
      if (side <= opts.maxSide) return t;
      // Big photos are scaled down first: the detector works at 512 px and the recogniser at 150 px
      // anyway, and a 1920-px frame costs twice the time for nothing.
      const k = opts.maxSide / side;
      return tf.image.resizeBilinear(t, [Math.round(img.height * k), Math.round(img.width * k)]).toInt();
    });
  }

  /** @param {Uint8Array} bytes @returns {Promise<{ ok: true, descriptor: Float32Array, width: number, height: number } | { ok: false, code: string }>} */
  async function describe(bytes) {
    let tensor;
    try {
      const img = decode(bytes);
      tensor = toTensor(img);
      const scale = Math.max(img.width, img.height) > opts.maxSide ? Math.max(img.width, img.height) / opts.maxSide : 1;
      const faces = await faceapi.detectAllFaces(tensor, detector).withFaceLandmarks().withFaceDescriptors();
      if (faces.length === 0) throw new Refusal('no_face');
      if (faces.length > 1) throw new Refusal('several_faces');
      const box = faces[0].detection.box;
      if (Math.min(box.width, box.height) * scale < opts.minFacePixels) throw new Refusal('face_too_small');
      return { ok: true, descriptor: Float32Array.from(faces[0].descriptor), width: img.width, height: img.height };
    } catch (err) {
      if (err instanceof Refusal) return { ok: false, code: err.code };
      throw err;
    } finally {
      if (tensor) tf.dispose(tensor);
    }
  }

  /**
   * Every face's box, in the image's own pixels (no descriptors): for cutting single faces out of
   * group photos (the threshold measurement's fixtures), never for verification.
   * @param {Uint8Array} bytes
   */
  async function faces(bytes) {
    let tensor;
    try {
      const img = decode(bytes);
      tensor = toTensor(img);
      const scale = Math.max(img.width, img.height) > opts.maxSide ? Math.max(img.width, img.height) / opts.maxSide : 1;
      const found = await faceapi.detectAllFaces(tensor, crowd);
      const boxes = found.map((d) => ({
        x: d.box.x * scale,
        y: d.box.y * scale,
        width: d.box.width * scale,
        height: d.box.height * scale,
        score: d.score,
      }));
      return { ok: true, boxes, width: img.width, height: img.height };
    } catch (err) {
      if (err instanceof Refusal) return { ok: false, code: err.code };
      throw err;
    } finally {
      if (tensor) tf.dispose(tensor);
    }
  }

  return { describe, faces, versions: { faceApi: faceapi.version, tfjs: tf.version_core, backend: tf.getBackend() } };
}
