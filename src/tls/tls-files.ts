import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { generate } from 'selfsigned';
import type { Config } from '../config.js';
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
export async function loadTlsMaterial(config: Config, log: Logger): Promise<TlsMaterial> {
  if (config.tls.certFile) {
    return {
      cert: readFileSync(config.tls.certFile),
      key: readFileSync(config.tls.keyFile),
      certFile: config.tls.certFile,
      dev: false,
    };
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
  return { cert: readFileSync(certFile), key: readFileSync(keyFile), certFile, dev: true };
}
