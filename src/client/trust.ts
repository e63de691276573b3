import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConnectFailure } from './failures.js';

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * The CA certificates (PEM) in `file`, checked before they are used. Node silently skips what is
 * not a PEM certificate in `ca`, which would turn a wrong file (a DER file, a private key, a typo'd
 * copy) into a baffling "self-signed certificate" from the handshake; this says what is wrong.
 */
export function readCa(file: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable' : code === 'EISDIR' ? 'is a directory' : (err as Error).message;
    throw new ConnectFailure('bad-ca', `CA file ${file} ${why}: pass --ca with the server's certificate or its CA (PEM)`, { cause: err });
  }
  const text = bytes.toString('latin1');
  const blocks = text.match(PEM_CERT) ?? [];
  if (blocks.length === 0) {
    const hint = text.includes('PRIVATE KEY') ? 'it holds a private key, not a certificate' : bytes[0] === 0x30 ? 'it looks like DER: convert it with `openssl x509 -inform der -in FILE -out FILE.pem`' : 'no "BEGIN CERTIFICATE" block';
    throw new ConnectFailure('bad-ca', `CA file ${file} is not a PEM certificate (${hint}): pass --ca with the server's certificate or its CA`);
  }
  for (const block of blocks) {
    try {
      new X509Certificate(block);
    } catch (err) {
      throw new ConnectFailure('bad-ca', `CA file ${file} holds a certificate that cannot be parsed (${(err as Error).message}): pass --ca with a good copy`, { cause: err });
    }
  }
  return Buffer.from(blocks.join('\n') + '\n');
}
