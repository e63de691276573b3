import { createHmac, type KeyObject } from 'node:crypto';
import type { RandomBytes } from '../deps.js';

// No 0/O, 1/I/L: a passcode is read from an email and typed by a person.
export const PASSCODE_ALPHABET = '23456789ABCDEFGHJKMNPQRSTUVWXYZ';
export const PASSCODE_LENGTH = 6;

/**
 * A passcode from the CSPRNG without modulo bias: bytes at or above the largest multiple of the
 * alphabet size are rejected rather than folded, so every character is equally likely.
 */
export function generatePasscode(random: RandomBytes, length = PASSCODE_LENGTH): string {
  const n = PASSCODE_ALPHABET.length;
  const limit = 256 - (256 % n);
  let out = '';
  while (out.length < length) {
    for (const byte of random(length * 2)) {
      if (byte >= limit) continue;
      out += PASSCODE_ALPHABET[byte % n];
      if (out.length === length) break;
    }
  }
  return out;
}

/** Passcodes are typed by people: compare them upper-cased. */
export function normalizePasscode(code: string): string {
  return code.toUpperCase();
}

/**
 * Keyed hash of a passcode, bound to the user. A passcode has only ~30 bits, so a plain hash in a
 * stolen database would be brute-forced at once; keyed with a secret that is not in the database,
 * it cannot be.
 */
export function hashPasscode(key: Buffer | KeyObject, userId: number, code: string): Buffer {
  return createHmac('sha256', key).update(`${userId}:${normalizePasscode(code)}`).digest();
}
