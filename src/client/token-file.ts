import { closeSync, fchmodSync, fstatSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';

// The operator's token between commands, as ~/.vault-token keeps Vault's: one small file, mode 0600,
// replaced whole. A renewal rotates the token and the server treats the old one as stolen after a
// short grace [P-4.5], so a renewed token is written here (atomically) before anything is printed:
// a crash or a full disk leaves either the old file or the new one, never half of one.

/** What `client login` keeps: the token and the MAC it is bound to, and what it was told about it. */
export interface StoredToken {
  readonly token: string;
  readonly mac: string;
  /** The server it came from (informational: a check goes where --host/--port say). */
  readonly host?: string;
  readonly port?: number;
  readonly email?: string;
  readonly role?: string;
  readonly expiresAt?: number;
  readonly renewableUntil?: number;
}

/** The token file cannot be used as it is; `message` says what to do. */
export class TokenFileError extends Error {
  override name = 'TokenFileError';
}

/** `$HELLWALL_TOKEN_FILE`, else `~/.hellwall-token`. */
export function defaultTokenFile(env: NodeJS.ProcessEnv, home: string): string {
  return env.HELLWALL_TOKEN_FILE || path.join(home, '.hellwall-token');
}

/**
 * The stored token, or null when there is none. A file readable by others is tightened to 0600
 * (`loosened` says it was, for a warning): it holds a bearer credential.
 */
export function readTokenFile(file: string): { stored: StoredToken; loosened: boolean } | null {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new TokenFileError(`cannot read the token file ${file}: ${(err as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new TokenFileError(`the token file ${file} is not a regular file`);
    const loosened = (st.mode & 0o077) !== 0;
    if (loosened) fchmodSync(fd, 0o600);
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(fd, 'utf8'));
    } catch {
      parsed = null;
    }
    if (!isStoredToken(parsed)) throw new TokenFileError(`${file} is not a hellwall token file: remove it, or log in again (hellwall client login)`);
    return { stored: parsed, loosened };
  } finally {
    closeSync(fd);
  }
}

function isStoredToken(v: unknown): v is StoredToken {
  const o = v as Record<string, unknown> | null;
  return typeof o === 'object' && o !== null && typeof o.token === 'string' && o.token !== '' && typeof o.mac === 'string' && o.mac !== '';
}

/**
 * Replaces the token file atomically: a temporary file beside it (created 0600, so the token is
 * never readable by others, whatever the umask), written and synced, then renamed over the old one.
 */
export function writeTokenFile(file: string, stored: StoredToken): void {
  const tmp = `${file}.${process.pid}.tmp`;
  let fd: number;
  try {
    fd = openSync(tmp, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new TokenFileError(`cannot write the token file ${file}: ${(err as Error).message}`);
    // Left by a process with this pid that died before the rename: it is ours to replace.
    unlinkSync(tmp);
    fd = openSync(tmp, 'wx', 0o600);
  }
  try {
    fchmodSync(fd, 0o600);
    writeSync(fd, JSON.stringify(stored) + '\n');
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw new TokenFileError(`cannot write the token file ${file}: ${(err as Error).message}`);
  }
  closeSync(fd);
  try {
    renameSync(tmp, file);
  } catch (err) {
    unlinkSync(tmp);
    throw new TokenFileError(`cannot replace the token file ${file}: ${(err as Error).message}`);
  }
  syncDir(path.dirname(file));
}

/** Removes the token file; false when there was none. */
export function removeTokenFile(file: string): boolean {
  try {
    unlinkSync(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new TokenFileError(`cannot remove the token file ${file}: ${(err as Error).message}`);
  }
}

/** Makes the rename durable; a file system that cannot sync a directory still renamed atomically. */
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Best effort (some file systems refuse fsync on a directory).
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
