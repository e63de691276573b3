import { createHmac, type KeyObject } from 'node:crypto';
import type { RandomBytes } from '../deps.js';

/** [P-3.1] The prefix lets secret scanners recognise a leaked token. */
export const TOKEN_PREFIX = 'Awfer_hellwall_';
const TOKEN_BYTES = 32; // 256 bits of entropy
const TOKEN_RE = /^Awfer_hellwall_[A-Za-z0-9_-]{43}$/;

export function isWellFormedToken(token: string): boolean {
  return TOKEN_RE.test(token);
}

export function newBaseToken(random: RandomBytes): string {
  return TOKEN_PREFIX + random(TOKEN_BYTES).toString('base64url');
}

/**
 * [P-3.2] The master token: HMAC under a server key over base token, MAC and the address the
 * server saw. Only this is stored, so a copy of the database yields no usable token, and a token
 * presented with another MAC or from another address simply finds nothing.
 */
export function masterToken(key: Buffer | KeyObject, token: string, mac: string, ip: string): Buffer {
  // NUL separators: none of the three fields can contain one, so the encoding is unambiguous.
  return createHmac('sha256', key).update(`${token}\0${mac}\0${ip}`).digest();
}

/**
 * The token that replaces `oldToken` in a rotation. Derived (not drawn) so that a request that was
 * already in flight with the old token, arriving within the grace, can be given the very same new
 * token without the server storing any token in clear. `nonce` is fresh per rotation.
 */
export function rotatedToken(key: Buffer | KeyObject, oldToken: string, nonce: Buffer): string {
  return TOKEN_PREFIX + createHmac('sha256', key).update(nonce).update(oldToken).digest().toString('base64url');
}
