import {
  closeSync,
  fsyncSync,
  linkSync,
  openSync,
  readdirSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import type { Logger, RandomBytes } from '../deps.js';
import type { Store } from '../store/store.js';
import { randomBytes } from 'node:crypto';
import { deriveKeys, loadOrCreateServerKey, readServerKeyFile, SERVER_KEY_FILE, type DerivedKeys } from './keys.js';
import { resealAll } from './secret-box.js';

/**
 * The server key ring lives in the data directory, one file per key, so its state is whatever the
 * files say and there is no second record to fall out of step with them:
 *
 * - key 1 is `server.key` (what every install before rotation has), key N > 1 is `server.key.N`;
 *   each holds 32 random bytes in base64, mode 0600;
 * - the live key with the highest id is the current one (new logins, renewals, passcodes);
 * - `server.key.N.retired` marks key N retired. Retiring writes the marker first, then deletes the
 *   key file: a crash in between leaves a marker, which wins, so a retired key never comes back.
 *
 * Ids are never reused: the next id is one above every id seen, retired ones included.
 */

/** One key of the ring: its id (stored with every hash made with it) and its purpose keys. */
export interface KeySet extends DerivedKeys {
  readonly id: number;
}

export interface KeyInfo {
  readonly id: number;
  readonly file: string;
  /** When the key file was written (its mtime); null once a retired key's file is gone. */
  readonly createdAt: number | null;
  readonly retiredAt: number | null;
  readonly status: 'current' | 'verifying' | 'retired';
}

// Operator-side codes for the CLI, not protocol error codes (those are E_* in the registry).
export type KeyRingErrorCode = 'key-unknown' | 'key-current' | 'key-none' | 'key-in-use';

export class KeyRingError extends Error {
  override name = 'KeyRingError';
  constructor(
    readonly code: KeyRingErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const ID = '([1-9][0-9]{0,8})';
const KEY_RE = new RegExp(`^${SERVER_KEY_FILE.replace('.', '\\.')}(?:\\.${ID})?$`);
const RETIRED_RE = new RegExp(`^${SERVER_KEY_FILE.replace('.', '\\.')}\\.${ID}\\.retired$`);

export function keyFileName(id: number): string {
  return id === 1 ? SERVER_KEY_FILE : `${SERVER_KEY_FILE}.${id}`;
}

export function retiredMarkerName(id: number): string {
  return `${SERVER_KEY_FILE}.${id}.retired`;
}

/** The ring as the data directory holds it, by id. Never reads key material. */
export function listKeys(dataDir: string): KeyInfo[] {
  let names: string[];
  try {
    names = readdirSync(dataDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const live = new Map<number, number>(); // id -> mtime
  const retired = new Map<number, number>();
  for (const name of names) {
    const k = KEY_RE.exec(name);
    if (k) {
      const id = k[1] === undefined ? 1 : Number(k[1]);
      // `server.key.1` is not key 1 (that is `server.key`): ignore it rather than guess.
      if (keyFileName(id) === name) live.set(id, statSync(path.join(dataDir, name)).mtimeMs);
      continue;
    }
    const r = RETIRED_RE.exec(name);
    if (r) retired.set(Number(r[1]), statSync(path.join(dataDir, name)).mtimeMs);
  }
  const ids = [...new Set([...live.keys(), ...retired.keys()])].sort((a, b) => a - b);
  const current = Math.max(0, ...[...live.keys()].filter((id) => !retired.has(id)));
  return ids.map((id) => ({
    id,
    file: path.join(dataDir, keyFileName(id)),
    createdAt: live.get(id) ?? null,
    retiredAt: retired.get(id) ?? null,
    status: retired.has(id) ? 'retired' : id === current ? 'current' : 'verifying',
  }));
}

interface RingState {
  readonly current: KeySet;
  readonly byId: ReadonlyMap<number, KeySet>;
  readonly verifying: readonly KeySet[];
}

function loadState(dataDir: string, log: Logger): RingState {
  const live = listKeys(dataDir).filter((k) => k.status !== 'retired');
  // Newest first: the current key, then older ones in the order a token check tries them.
  const sets = live
    .sort((a, b) => b.id - a.id)
    .map((k): KeySet => ({ id: k.id, ...deriveKeys(readServerKeyFile(k.file, log)) }));
  const current = sets[0];
  if (!current) throw new KeyRingError('key-none', `no server key left in ${dataDir}: every key is retired`);
  return { current, byId: new Map(sets.map((s) => [s.id, s])), verifying: sets };
}

/**
 * The keys a running server holds. Read at start and on `reload()` (SIGHUP), never on the hot path:
 * a rotation by the CLI takes effect in a server when it reloads, and until then the server keeps
 * making hashes with its old current key, which is still in the ring and so still verifies after.
 */
export class KeyRing {
  #state: RingState;

  private constructor(
    readonly dataDir: string,
    readonly log: Logger,
  ) {
    this.#state = loadState(dataDir, log);
  }

  /** Loads the ring, creating key 1 (`server.key`) when the directory has no key at all. */
  static open(dataDir: string, random: RandomBytes, log: Logger): KeyRing {
    if (listKeys(dataDir).length === 0) loadOrCreateServerKey(dataDir, random, log);
    return new KeyRing(dataDir, log);
  }

  /** The key new hashes are made with. */
  get current(): KeySet {
    return this.#state.current;
  }

  /** Live keys, current first, then older ones newest first. */
  get verifying(): readonly KeySet[] {
    return this.#state.verifying;
  }

  /** A live key by id; undefined for a retired or unknown one (whose hashes then never verify). */
  get(id: number): KeySet | undefined {
    return this.#state.byId.get(id);
  }

  /** Re-reads the ring; on failure throws and the keys held so far stay in use. */
  reload(): { current: number; verifying: number[] } {
    this.#state = loadState(this.dataDir, this.log);
    return { current: this.current.id, verifying: this.verifying.map((k) => k.id) };
  }
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Adds a new key, which becomes the current one; returns its id. The key is written in full to a
 * temporary file and fsynced, then hard-linked to its name: the link fails rather than replaces when
 * the name exists (another rotation won the id; we take the next), and a crash never leaves a
 * half-written key under a name the ring reads.
 */
export function rotateKey(dataDir: string, random: RandomBytes, log: Logger): number {
  if (listKeys(dataDir).length === 0) loadOrCreateServerKey(dataDir, random, log);
  for (;;) {
    const id = Math.max(0, ...listKeys(dataDir).map((k) => k.id)) + 1;
    const file = path.join(dataDir, keyFileName(id));
    // A dot name the ring never reads: a crash before the link leaves only an unused file.
    const tmp = path.join(dataDir, `.${keyFileName(id)}.${random(8).toString('hex')}.tmp`);
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, random(32).toString('base64') + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(tmp, file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') {
        unlinkSync(tmp);
        continue;
      }
      unlinkSync(tmp);
      throw err;
    }
    unlinkSync(tmp);
    fsyncDir(dataDir);
    log.info({ event: 'key.rotate', keyId: id }, 'server key created; it becomes current in each server at its next reload (SIGHUP)');
    return id;
  }
}

/**
 * A running server records the key it signs with every NODE_HEARTBEAT_MS; one not heard from for
 * NODE_SEEN_MS is taken to be gone (killed without a clean stop).
 */
export const NODE_HEARTBEAT_MS = 60_000;
export const NODE_SEEN_MS = 3 * NODE_HEARTBEAT_MS;

/**
 * Retires a key: its hashes stop verifying. Refuses the current key (there must always be one to
 * make new hashes with), and a key any running server still makes new hashes with (it has not
 * reloaded since the rotation). The marker is written first (from then on no ring loads the key), then
 * the sessions and pending passcodes made with it are revoked in the database so the state is
 * explicit and running servers see it at once, then the key material is deleted. Running it again
 * after a crash finishes the job.
 */
export async function retireKey(
  opts: { dataDir: string; store: Store; now: number; log: Logger; random?: RandomBytes },
  id: number,
): Promise<{ sessions: number; passcodes: number; secrets: number; alreadyRetired: boolean }> {
  const { dataDir, store, now, log } = opts;
  const info = listKeys(dataDir).find((k) => k.id === id);
  if (!info) throw new KeyRingError('key-unknown', `no server key with id ${id}`);
  if (info.status === 'current') throw new KeyRingError('key-current', `key ${id} is the current key; rotate first, then retire it`);
  const alreadyRetired = info.status === 'retired';
  // The files say what the next reload will use; the database says what running servers use now.
  const signing = (await store.listNodes(now - NODE_SEEN_MS)).filter((n) => n.currentKeyId === id);
  if (!alreadyRetired && signing.length > 0) {
    throw new KeyRingError(
      'key-in-use',
      `key ${id} is still the current key of ${signing.length} running server(s) (${signing.map((n) => n.id).join(', ')}): send SIGHUP to each so they use the new key, then retire`,
    );
  }
  // Sealed secrets (second factors) move to the current key while the retired key's material is
  // still on disk: unlike a session, a secret cannot be issued again (src/keys/secret-box.ts). Also
  // after a crash between the marker and the unlink, since the file is still there.
  let secrets = 0;
  if (info.createdAt !== null) {
    const current = listKeys(dataDir).find((k) => k.status === 'current');
    if (!current) throw new KeyRingError('key-none', `no current server key in ${dataDir} to re-seal secrets under`);
    const from = { id, ...deriveKeys(readServerKeyFile(info.file, log)) };
    const to = { id: current.id, ...deriveKeys(readServerKeyFile(current.file, log)) };
    const r = await resealAll(store, from, to, now, opts.random ?? randomBytes);
    secrets = r.resealed;
    if (r.unreadable > 0) log.warn({ event: 'key.retire', keyId: id, unreadable: r.unreadable }, 'sealed secrets that do not open under the retired key were left as they are');
  }
  if (!alreadyRetired) {
    writeFileSync(path.join(dataDir, retiredMarkerName(id)), `retired ${new Date(now).toISOString()}\n`, { flag: 'wx', mode: 0o600 });
    fsyncDir(dataDir);
  }
  const revoked = await store.revokeByKey(id, now, 'key-retired');
  if (info.createdAt !== null) {
    unlinkSync(info.file);
    fsyncDir(dataDir);
  }
  log.info({ event: 'key.retire', keyId: id, ...revoked, secretsResealed: secrets, alreadyRetired }, 'server key retired');
  return { ...revoked, secrets, alreadyRetired };
}
