import { createSecretKey, hkdfSync, type KeyObject } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger, RandomBytes } from '../deps.js';

export const SERVER_KEY_FILE = 'server.key';

/** Purpose-separated keys derived from the one server key, so no key is used for two jobs. */
export interface DerivedKeys {
  /** HMAC key for master tokens: HMAC(base token, MAC, IP) [P-3.2]. */
  readonly master: KeyObject;
  /** HMAC key for stored passcode hashes. */
  readonly passcode: KeyObject;
  /** HMAC key that derives a rotated token from the old one, so the grace path needs no stored secret. */
  readonly rotate: KeyObject;
  /** AES-256-GCM key sealing secrets at rest (TOTP secrets, biometric templates): src/keys/secret-box.ts. */
  readonly seal: KeyObject;
}

/**
 * Reads `<dataDir>/server.key`, creating it (32 random bytes, mode 0600) on first start. `wx` makes
 * creation atomic: two processes starting together cannot end up with different keys.
 */
export function loadOrCreateServerKey(dataDir: string, random: RandomBytes, log: Logger): Buffer {
  const file = path.join(dataDir, SERVER_KEY_FILE);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  try {
    writeFileSync(file, random(32).toString('base64') + '\n', { flag: 'wx', mode: 0o600 });
    log.info({ file }, 'generated a new server key');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return readServerKeyFile(file, log);
}

/** Reads one key file (base64), tightening loose permissions to 0600 first. */
export function readServerKeyFile(file: string, log: Logger): Buffer {
  const mode = statSync(file).mode & 0o777;
  if (mode & 0o077) {
    log.warn({ file, mode: mode.toString(8) }, 'server key is readable by group or others; tightening to 0600');
    chmodSync(file, 0o600);
  }
  const key = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
  if (key.length < 32) throw new Error(`server key ${file} is shorter than 32 bytes`);
  return key;
}

export function deriveKeys(serverKey: Buffer): DerivedKeys {
  // KeyObjects, not Buffers: createHmac then skips importing the key on every call (~20% of an
  // HMAC, measured), and the key material is kept out of the JS heap.
  const derive = (info: string): KeyObject =>
    createSecretKey(Buffer.from(hkdfSync('sha256', serverKey, Buffer.alloc(0), info, 32)));
  return {
    master: derive('hellwall/v1/master-token'),
    passcode: derive('hellwall/v1/passcode'),
    rotate: derive('hellwall/v1/rotate'),
    seal: derive('hellwall/v1/secret-box'),
  };
}
