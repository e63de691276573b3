// Image variations for measuring the threshold (test/face/): crop, scale, brightness, rotation and
// JPEG quality, in plain JS over RGB pixels (jpeg-js decodes and encodes). Test tooling, not used by
// the server.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const jpeg = require('jpeg-js');

/** @typedef {{ width: number, height: number, data: Uint8Array }} Rgb */

/** @param {Uint8Array} bytes @returns {Rgb} */
export function decodeJpeg(bytes) {
  const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, maxResolutionInMP: 40 });
  return { width: img.width, height: img.height, data: img.data };
}

/** @param {Rgb} img @param {number} quality 1..100 @returns {Buffer} */
export function encodeJpeg(img, quality = 90) {
  const rgba = Buffer.alloc(img.width * img.height * 4);
  for (let i = 0, j = 0; i < img.data.length; i += 3, j += 4) {
    rgba[j] = img.data[i];
    rgba[j + 1] = img.data[i + 1];
    rgba[j + 2] = img.data[i + 2];
    rgba[j + 3] = 255;
  }
  return jpeg.encode({ width: img.width, height: img.height, data: rgba }, quality).data;
}

/** The rectangle (clamped to the image). @param {Rgb} img */
export function crop(img, x, y, width, height) {
  const x0 = Math.max(0, Math.round(x));
  const y0 = Math.max(0, Math.round(y));
  const w = Math.min(img.width - x0, Math.round(width));
  const h = Math.min(img.height - y0, Math.round(height));
  const out = new Uint8Array(w * h * 3);
  for (let row = 0; row < h; row++) {
    const from = ((y0 + row) * img.width + x0) * 3;
    out.set(img.data.subarray(from, from + w * 3), row * w * 3);
  }
  return { width: w, height: h, data: out };
}

function sample(img, fx, fy, out, o) {
  // Bilinear, with edge pixels repeated outside the image (rotation's corners).
  const x = Math.min(Math.max(fx, 0), img.width - 1);
  const y = Math.min(Math.max(fy, 0), img.height - 1);
  const x0 = Math.floor(x);
  const y0 = Math.floor(y);
  const x1 = Math.min(x0 + 1, img.width - 1);
  const y1 = Math.min(y0 + 1, img.height - 1);
  const ax = x - x0;
  const ay = y - y0;
  for (let c = 0; c < 3; c++) {
    const p00 = img.data[(y0 * img.width + x0) * 3 + c];
    const p10 = img.data[(y0 * img.width + x1) * 3 + c];
    const p01 = img.data[(y1 * img.width + x0) * 3 + c];
    const p11 = img.data[(y1 * img.width + x1) * 3 + c];
    out[o + c] = Math.round((p00 * (1 - ax) + p10 * ax) * (1 - ay) + (p01 * (1 - ax) + p11 * ax) * ay);
  }
}

/** Resized by `k`. @param {Rgb} img */
export function scale(img, k) {
  const w = Math.max(1, Math.round(img.width * k));
  const h = Math.max(1, Math.round(img.height * k));
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) sample(img, (x + 0.5) / k - 0.5, (y + 0.5) / k - 0.5, out, (y * w + x) * 3);
  return { width: w, height: h, data: out };
}

/** Every channel times `k`, clamped. @param {Rgb} img */
export function brightness(img, k) {
  const out = new Uint8Array(img.data.length);
  for (let i = 0; i < out.length; i++) out[i] = Math.min(255, Math.round(img.data[i] * k));
  return { width: img.width, height: img.height, data: out };
}

/** Turned by `degrees` about the centre, same size. @param {Rgb} img */
export function rotate(img, degrees) {
  const a = (degrees * Math.PI) / 180;
  const cos = Math.cos(a);
  const sin = Math.sin(a);
  const cx = (img.width - 1) / 2;
  const cy = (img.height - 1) / 2;
  const out = new Uint8Array(img.data.length);
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      const dx = x - cx;
      const dy = y - cy;
      sample(img, cx + dx * cos + dy * sin, cy - dx * sin + dy * cos, out, (y * img.width + x) * 3);
    }
  }
  return { width: img.width, height: img.height, data: out };
}
