import { closeSync, fchmodSync, existsSync, fstatSync, openSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { generate } from 'selfsigned';
import { ConfigError, type Config } from '../config.js';
import type { Logger } from '../deps.js';

export const DEV_CERT_FILE = 'dev-cert.pem';
export const DEV_KEY_FILE = 'dev-key.pem';

export interface TlsMaterial {
  readonly key: Buffer;
  readonly cert: Buffer;
  readonly certFile: string;
  readonly dev: boolean;
}

/**
 * The certificate and key the listener uses: the configured files, or (when none are configured)
 * a self-signed development certificate in the data directory, generated on first start. The dev
 * certificate is announced loudly: clients must be told to trust it, and production must not use it.
 */
export async function loadTlsMaterial(config: Pick<Config, 'dataDir' | 'tls'>, log: Logger): Promise<TlsMaterial> {
  if (config.tls.certFile) {
    const key = readChecked(config.tls.keyFile, (file, st) => {
      if (!keyModeIsSafe(st.mode, st.uid)) {
        throw new ConfigError(
          `TLS key file ${describe(file)} is readable or writable by group or others (mode ${octal(st.mode)}); ` +
            `refusing to use it. Fix: chmod 600 ${file} (or root-owned 0640 for a key shared through a group such as ssl-cert)`,
        );
      }
    });
    return { cert: readCert(config.tls.certFile, log), key, certFile: config.tls.certFile, dev: false };
  }
  const certFile = path.join(config.dataDir, DEV_CERT_FILE);
  const keyFile = path.join(config.dataDir, DEV_KEY_FILE);
  if (!existsSync(certFile) || !existsSync(keyFile)) {
    const notAfterDate = new Date(Date.now() + 365 * 24 * 3600 * 1000);
    const pems = await generate([{ name: 'commonName', value: 'hellwall-dev' }], {
      keyType: 'ec',
      curve: 'P-256',
      algorithm: 'sha256',
      notAfterDate,
      extensions: [
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true, critical: true },
        { name: 'extKeyUsage', serverAuth: true },
        {
          name: 'subjectAltName',
          altNames: [
            { type: 2, value: 'localhost' },
            { type: 7, ip: '127.0.0.1' },
            { type: 7, ip: '::1' },
          ],
        },
      ],
    });
    writeFileSync(keyFile, pems.private, { mode: 0o600 });
    writeFileSync(certFile, pems.cert, { mode: 0o644 });
    log.info({ certFile }, 'generated a development TLS certificate');
  }
  log.warn(
    { certFile },
    'USING A SELF-SIGNED DEVELOPMENT CERTIFICATE. Clients must trust this file explicitly; set HELLWALL_TLS_CERT and HELLWALL_TLS_KEY for production (see certs/README.md)',
  );
  // The dev key is ours: a loose one (an old checkout, a copy, a umask accident) is tightened rather
  // than refused, as keys.ts does for server.key.
  const key = readChecked(keyFile, (file, st, fd) => {
    if (st.mode & 0o077) {
      log.warn({ file, mode: octal(st.mode) }, 'development TLS key is readable by group or others; tightening to 0600');
      fchmodSync(fd, 0o600);
    }
  });
  return { cert: readCert(certFile, log), key, certFile, dev: true };
}

/**
 * The key-file rule: no access at all for others, and none for the group, with one exception: a
 * root-owned file whose group may only read it (0640/0440). That is the Debian /etc/ssl/private
 * layout (root:ssl-cert), where root deliberately grants the key to the service's group; the service
 * user cannot have loosened it, and the group cannot change it. A group-readable key owned by anyone
 * else is refused: a non-root owner chose to share it, usually by accident (umask 022, `cp`).
 */
export function keyModeIsSafe(mode: number, uid: number): boolean {
  const loose = mode & 0o077;
  return loose === 0 || (uid === 0 && loose === 0o040);
}

/**
 * Opens the file once and checks the descriptor that is then read: no window between the check
 * and the read, and a symlink is judged by what it points to.
 */
function readChecked(file: string, check: (file: string, st: { mode: number; uid: number }, fd: number) => void): Buffer {
  const fd = openSync(file, 'r');
  try {
    // POSIX mode bits mean nothing on Windows.
    if (process.platform !== 'win32') check(file, fstatSync(fd), fd);
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

function readCert(file: string, log: Logger): Buffer {
  return readChecked(file, (f, st) => {
    // The certificate is public, so only a warning: a local user who swaps it cannot make one that
    // matches the key without the key (or the CA), so the worst is a failed start or reload.
    if (st.mode & 0o002) {
      log.warn({ file: describe(f), mode: octal(st.mode) }, `TLS certificate file is writable by others; fix: chmod o-w ${f}`);
    }
  });
}

/** The path as configured, plus where it really leads when that differs (a symlink). */
function describe(file: string): string {
  try {
    const real = realpathSync(file);
    return real === path.resolve(file) ? file : `${file} (-> ${real})`;
  } catch {
    return file;
  }
}

function octal(mode: number): string {
  return (mode & 0o777).toString(8).padStart(4, '0');
}
