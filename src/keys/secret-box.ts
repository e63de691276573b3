import { createCipheriv, createDecipheriv, type KeyObject } from 'node:crypto';
import type { RandomBytes } from '../deps.js';
import type { SealedSecretRecord, Store } from '../store/store.js';

/**
 * Secrets at rest (a TOTP secret, the key of recovery-code hashes, a biometric template): sealed
 * with AES-256-GCM under the `seal` key HKDF derives from a server key of the ring
 * (src/keys/keys.ts), the key id stored beside the ciphertext. The keys live in the data directory,
 * never in the database, so a copy of the database alone yields no secret.
 *
 * - Rotation (`hellwall key rotate`): new seals use the current key; older ones open with the key
 *   they name for as long as it is live, so nothing needs rewriting.
 * - Retirement (`hellwall key retire N`): before key N's material is deleted, every secret sealed
 *   under it is re-sealed under the current key (`resealAll`, called by retireKey). Unlike a
 *   passcode or a session, a secret cannot be re-issued by the server: dropping it would silently
 *   remove an operator's second factor.
 *
 * Each seal is bound (GCM additional data) to its user, kind and key id, so a row copied onto
 * another user or kind fails to open rather than handing one operator's factor to another.
 *
 * Layout of `sealed`: version byte 1 ‖ 12-byte random nonce ‖ 16-byte tag ‖ ciphertext. A random
 * 96-bit nonce per seal is safe far beyond the number of seals one key will ever make (NIST SP
 * 800-38D §8.3 bounds it at 2^32).
 */

const VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const HEADER = 1 + NONCE_BYTES + TAG_BYTES;

/** A key that can seal: its ring id and its derived AES key. */
export interface SealingKey {
  readonly id: number;
  readonly seal: KeyObject;
}

/** What the SecretBox needs of the key ring (KeyRing satisfies it). */
export interface SealingKeys {
  readonly current: SealingKey;
  get(id: number): SealingKey | undefined;
}

function aad(userId: number, kind: string, keyId: number): Buffer {
  return Buffer.from(`hellwall/secret/v1\0${userId}\0${kind}\0${keyId}`, 'utf8');
}

/** Seals `plaintext` for (userId, kind) under `key`. */
export function sealWith(key: SealingKey, userId: number, kind: string, plaintext: Buffer, random: RandomBytes): Buffer {
  const nonce = random(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key.seal, nonce);
  cipher.setAAD(aad(userId, kind, key.id));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.from([VERSION]), nonce, cipher.getAuthTag(), body]);
}

/** Opens a seal made by `sealWith`; undefined when it does not authenticate (wrong key, user, kind, or tampered). */
export function openWith(key: SealingKey, userId: number, kind: string, sealed: Buffer): Buffer | undefined {
  if (sealed.length < HEADER || sealed[0] !== VERSION) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key.seal, sealed.subarray(1, 1 + NONCE_BYTES));
    decipher.setAAD(aad(userId, kind, key.id));
    decipher.setAuthTag(sealed.subarray(1 + NONCE_BYTES, HEADER));
    return Buffer.concat([decipher.update(sealed.subarray(HEADER)), decipher.final()]);
  } catch {
    return undefined;
  }
}

/** Seals and opens store records with the ring's keys. */
export class SecretBox {
  readonly #keys: SealingKeys;
  readonly #random: RandomBytes;

  constructor(keys: SealingKeys, random: RandomBytes) {
    this.#keys = keys;
    this.#random = random;
  }

  /** A record for `store.putSecret`, sealed under the current key. */
  seal(userId: number, kind: string, plaintext: Buffer, now: number): SealedSecretRecord {
    const key = this.#keys.current;
    return { userId, kind, keyId: key.id, sealed: sealWith(key, userId, kind, plaintext, this.#random), updatedAt: now };
  }

  /**
   * The plaintext of a stored record; undefined when its key is no longer in the ring (retired
   * without re-sealing, which retireKey does not allow) or it fails to authenticate.
   */
  open(record: SealedSecretRecord): Buffer | undefined {
    const key = this.#keys.get(record.keyId);
    return key && openWith(key, record.userId, record.kind, record.sealed);
  }
}

/**
 * Re-seals every secret sealed under `from` with `to`, in batches, each row only while it is still
 * under `from` (a re-enrolment meanwhile wins). Answers how many were re-sealed. A row that does not
 * open under `from` (tampered) is left as it is and counted in `unreadable`: it never opened anyway.
 */
export async function resealAll(
  store: Store,
  from: SealingKey,
  to: SealingKey,
  now: number,
  random: RandomBytes,
): Promise<{ resealed: number; unreadable: number }> {
  let resealed = 0;
  let unreadable = 0;
  const skipped = new Set<string>();
  for (;;) {
    const batch = (await store.listSecretsByKey(from.id, 200 + skipped.size)).filter((r) => !skipped.has(`${r.userId}\0${r.kind}`));
    if (batch.length === 0) return { resealed, unreadable };
    for (const r of batch) {
      const plain = openWith(from, r.userId, r.kind, r.sealed);
      if (!plain) {
        unreadable++;
        skipped.add(`${r.userId}\0${r.kind}`);
        continue;
      }
      const record = { ...r, keyId: to.id, sealed: sealWith(to, r.userId, r.kind, plain, random), updatedAt: now };
      plain.fill(0);
      if (await store.resealSecret(r.userId, r.kind, from.id, record)) resealed++;
    }
  }
}
