import { isIPv4, isIPv6, SocketAddress } from 'node:net';

// The PROXY protocol (HAProxy, versions 1 and 2): a load balancer prepends one header to the TCP
// stream naming the client it accepted the connection from. Spec:
// https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt

/** A v1 header is one text line of at most 107 bytes, CRLF included (spec 2.1). */
export const V1_MAX_BYTES = 107;
/** The fixed part of a v2 header: signature, version/command, family/transport, length. */
export const V2_FIXED_BYTES = 16;
/**
 * The largest v2 header accepted, fixed part and TLVs together. The format allows 16 + 65535, but
 * the headers balancers send are well under 1 KiB (addresses plus a few TLVs): a cap far below the
 * format's keeps what one connection can make the server hold small.
 */
export const V2_MAX_BYTES = 4096;

const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const CR = 0x0d;
const LF = 0x0a;
const PP2_TYPE_CRC32C = 0x03;

/**
 * Why a header was refused, for the log's `reason`. Not protocol error codes (those are `E_…` and
 * registered): nothing is ever sent back, the connection is only closed.
 */
export type ProxyHeaderErrorCode =
  /** The first bytes are neither a v1 nor a v2 signature (a trusted peer that did not send one). */
  | 'not-proxy'
  /** v1: no CRLF within 107 bytes. */
  | 'v1-too-long'
  /** v1: not `PROXY TCP4|TCP6|UNKNOWN …` with single spaces and CRLF. */
  | 'v1-syntax'
  /** An address that is not valid for the family the header names. */
  | 'bad-address'
  /** v1: a port that is not a decimal number 0–65535. */
  | 'bad-port'
  /** v2: the version nibble is not 2. */
  | 'v2-version'
  /** v2: the command nibble is neither LOCAL (0) nor PROXY (1). */
  | 'v2-command'
  /** v2: an invalid family/transport byte, or one this listener does not serve (UDP, UNIX). */
  | 'v2-family'
  /** v2: the length is too short for the addresses of the family. */
  | 'v2-length'
  /** v2: the header would exceed V2_MAX_BYTES. */
  | 'v2-too-long'
  /** v2: a TLV runs past the end of the header, or a CRC32C TLV is not 4 bytes. */
  | 'v2-tlv'
  /** v2: the CRC32C TLV does not match the header. */
  | 'v2-crc'
  /** The stream ended inside the header. */
  | 'truncated'
  /** The header did not arrive in time (reported by the listener, which owns the clock). */
  | 'timeout';

export interface ProxyHeaderError {
  readonly code: ProxyHeaderErrorCode;
  readonly message: string;
}

export interface ProxyEndpoint {
  /** Canonical text form (IPv6 compressed and lower-case, as a socket would report it). */
  readonly address: string;
  readonly port: number;
}

/** A header that names the client: its address replaces the socket's. */
export interface ProxiedHeader {
  readonly version: 1 | 2;
  readonly command: 'proxy';
  readonly family: 'tcp4' | 'tcp6';
  readonly source: ProxyEndpoint;
  readonly destination: ProxyEndpoint;
}

/**
 * A header that names no client: v2 LOCAL (the balancer's own connection, e.g. a health check),
 * v1 UNKNOWN and v2 UNSPEC. The spec says to use the real connection endpoints.
 */
export interface UnproxiedHeader {
  readonly version: 1 | 2;
  readonly command: 'proxy' | 'local';
  readonly family: 'unknown';
}

export type ProxyHeader = ProxiedHeader | UnproxiedHeader;

export type ProxyParseResult =
  | { readonly status: 'incomplete' }
  /** `rest`: the bytes after the header in the chunk that completed it (the TLS stream). */
  | { readonly status: 'done'; readonly header: ProxyHeader; readonly rest: Buffer }
  | { readonly status: 'error'; readonly error: ProxyHeaderError };

const INCOMPLETE: ProxyParseResult = Object.freeze({ status: 'incomplete' });

/**
 * Incremental PROXY header parser, v1 and v2 detected from the first bytes. Accepts any chunking.
 *
 * Memory is bounded and fixed: a 16-byte buffer to detect the version, then one buffer of exactly
 * the header's size (at most 107 bytes for v1, V2_MAX_BYTES for v2) into which pieces are copied;
 * bytes past the header are never copied, they come back as `rest`. A wrong signature fails at
 * the first byte that differs, so a peer speaking TLS directly fails on its first byte.
 *
 * After an error every push answers the same error. After a header, every push answers the same
 * header with the whole chunk as `rest` (the header is behind; everything after it is payload).
 */
export class ProxyHeaderParser {
  #buf = Buffer.alloc(V2_FIXED_BYTES);
  #filled = 0;
  /** 0 until the signature is complete. */
  #version: 0 | 1 | 2 = 0;
  /** v2: the header's total size once the fixed part is read (0 before). */
  #total = 0;
  #final: ProxyParseResult | null = null;

  /** Bytes taken as part of the header so far. */
  get receivedBytes(): number {
    return this.#filled;
  }

  push(chunk: Buffer): ProxyParseResult {
    const final = this.#final;
    if (final) return final.status === 'done' ? { status: 'done', header: final.header, rest: chunk } : final;
    let off = 0;
    while (off < chunk.length) {
      if (this.#version === 0) {
        // At most 12 bytes go through here, one at a time: simple and cheap.
        const byte = chunk[off++]!;
        const first = this.#filled === 0 ? byte : this.#buf[0];
        const sig = first === V1_PREFIX[0] ? V1_PREFIX : V2_SIGNATURE;
        if (byte !== sig[this.#filled]) {
          return this.#fail('not-proxy', 'connection does not start with a PROXY protocol header');
        }
        this.#buf[this.#filled++] = byte;
        if (this.#filled === sig.length) {
          if (sig === V1_PREFIX) {
            const line = Buffer.alloc(V1_MAX_BYTES);
            this.#buf.copy(line, 0, 0, this.#filled);
            this.#buf = line;
            this.#version = 1;
          } else {
            this.#version = 2;
          }
        }
      } else if (this.#version === 1) {
        const start = this.#filled;
        const n = Math.min(chunk.length - off, V1_MAX_BYTES - start);
        chunk.copy(this.#buf, start, off, off + n);
        this.#filled += n;
        const lf = this.#buf.subarray(start, this.#filled).indexOf(LF);
        if (lf === -1) {
          off += n;
          if (this.#filled === V1_MAX_BYTES) {
            return this.#fail('v1-too-long', `v1 header has no CRLF within ${V1_MAX_BYTES} bytes`);
          }
          continue;
        }
        const end = start + lf; // index of LF in the line
        off += lf + 1;
        this.#filled = end + 1;
        if (this.#buf[end - 1] !== CR) return this.#fail('v1-syntax', 'v1 header line does not end with CRLF');
        const parsed = parseV1(this.#buf.toString('latin1', 0, end - 1));
        return this.#finish(parsed, chunk.subarray(off));
      } else {
        const need = (this.#total || V2_FIXED_BYTES) - this.#filled;
        const n = Math.min(chunk.length - off, need);
        chunk.copy(this.#buf, this.#filled, off, off + n);
        this.#filled += n;
        off += n;
        if (n < need) continue;
        if (this.#total === 0) {
          // The fixed part is in: check what can be checked before waiting for (and allocating) more.
          const error = checkV2Fixed(this.#buf);
          if (error) return this.#fail(error.code, error.message);
          this.#total = V2_FIXED_BYTES + this.#buf.readUInt16BE(14);
          if (this.#total > V2_FIXED_BYTES) {
            const whole = Buffer.alloc(this.#total);
            this.#buf.copy(whole, 0, 0, V2_FIXED_BYTES);
            this.#buf = whole;
            continue;
          }
        }
        return this.#finish(parseV2(this.#buf), chunk.subarray(off));
      }
    }
    return INCOMPLETE;
  }

  /** The stream ended: an error unless a header was complete. */
  end(): ProxyParseResult {
    if (this.#final) return this.#final;
    return this.#fail('truncated', `stream ended ${this.#filled} bytes into the PROXY header`);
  }

  #finish(parsed: ProxyHeader | ProxyHeaderError, rest: Buffer): ProxyParseResult {
    if ('code' in parsed) return this.#fail(parsed.code, parsed.message);
    // The header is kept as the result; its bytes are not needed any more.
    this.#buf = Buffer.alloc(0);
    this.#final = { status: 'done', header: parsed, rest: Buffer.alloc(0) };
    return { status: 'done', header: parsed, rest };
  }

  #fail(code: ProxyHeaderErrorCode, message: string): ProxyParseResult {
    this.#buf = Buffer.alloc(0);
    this.#final = { status: 'error', error: { code, message } };
    return this.#final;
  }
}

const err = (code: ProxyHeaderErrorCode, message: string): ProxyHeaderError => ({ code, message });

/** `line`: the header without its CRLF, decoded as latin1 (one char per byte). */
function parseV1(line: string): ProxyHeader | ProxyHeaderError {
  const fields = line.split(' ');
  const proto = fields[1];
  // [spec 2.1] With UNKNOWN the receiver must ignore whatever follows up to the CRLF.
  if (proto === 'UNKNOWN') return { version: 1, command: 'proxy', family: 'unknown' };
  if (proto !== 'TCP4' && proto !== 'TCP6') return err('v1-syntax', 'v1 protocol must be TCP4, TCP6 or UNKNOWN');
  if (fields.length !== 6) return err('v1-syntax', 'v1 header must have 6 fields separated by single spaces');
  const family = proto === 'TCP4' ? 'tcp4' : 'tcp6';
  const source = v1Address(fields[2]!, family);
  const destination = v1Address(fields[3]!, family);
  if (source === null || destination === null) return err('bad-address', `v1 address is not a valid ${proto} address`);
  const sport = v1Port(fields[4]!);
  const dport = v1Port(fields[5]!);
  if (sport === null || dport === null) return err('bad-port', 'v1 port must be a decimal number from 0 to 65535');
  return { version: 1, command: 'proxy', family, source: { address: source, port: sport }, destination: { address: destination, port: dport } };
}

function v1Address(text: string, family: 'tcp4' | 'tcp6'): string | null {
  if (family === 'tcp4') return isIPv4(text) ? text : null;
  // A zone id (`%eth0`) names an interface of the balancer's host: meaningless here.
  if (!isIPv6(text) || text.includes('%')) return null;
  // Balancers may write an address in any of its equivalent forms; binding compares text, so
  // bring it to the form the kernel reports for a direct connection.
  try {
    return new SocketAddress({ address: text, family: 'ipv6' }).address;
  } catch {
    // isIPv6 and the system's parser disagreeing on some odd form: refuse rather than throw.
    return null;
  }
}

function v1Port(text: string): number | null {
  // Decimal without sign or leading zeros, as the spec's senders write it.
  if (!/^(?:0|[1-9]\d{0,4})$/.test(text)) return null;
  const port = Number(text);
  return port <= 65535 ? port : null;
}

/** The checks that need only the fixed 16 bytes: a bad header fails before the rest is awaited. */
function checkV2Fixed(buf: Buffer): ProxyHeaderError | null {
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return err('v2-version', `v2 version must be 2, got ${verCmd >> 4}`);
  const command = verCmd & 0x0f;
  if (command > 1) return err('v2-command', `v2 command must be LOCAL or PROXY, got ${command}`);
  const length = buf.readUInt16BE(14);
  if (V2_FIXED_BYTES + length > V2_MAX_BYTES) return err('v2-too-long', `v2 header of ${V2_FIXED_BYTES + length} bytes exceeds ${V2_MAX_BYTES}`);
  // [spec 2.2] LOCAL: the family and the address block are to be ignored.
  if (command === 0) return null;
  const fam = buf[13]!;
  if (fam >> 4 > 3 || (fam & 0x0f) > 2) return err('v2-family', `invalid v2 family/transport 0x${hex(fam)}`);
  if (fam >> 4 === 0) return null; // UNSPEC: no addresses to read
  if (fam !== 0x11 && fam !== 0x21) {
    // UDP or UNIX sockets, or an unspecified transport: nothing a TCP client address can come from.
    return err('v2-family', `unsupported v2 family/transport 0x${hex(fam)} (only TCP over IPv4 or IPv6)`);
  }
  const needed = fam === 0x11 ? 12 : 36;
  if (length < needed) return err('v2-length', `v2 length ${length} is too short for the addresses (${needed})`);
  return null;
}

/** `buf`: the whole header, already through checkV2Fixed. */
function parseV2(buf: Buffer): ProxyHeader | ProxyHeaderError {
  if ((buf[12]! & 0x0f) === 0) return { version: 2, command: 'local', family: 'unknown' };
  const fam = buf[13]!;
  if (fam >> 4 === 0) return { version: 2, command: 'proxy', family: 'unknown' };
  const v4 = fam === 0x11;
  const size = v4 ? 4 : 16;
  const at = V2_FIXED_BYTES;
  const source = v4 ? ipv4Text(buf, at) : ipv6Text(buf, at);
  const destination = v4 ? ipv4Text(buf, at + size) : ipv6Text(buf, at + size);
  const sport = buf.readUInt16BE(at + 2 * size);
  const dport = buf.readUInt16BE(at + 2 * size + 2);
  const tlvError = checkTlvs(buf, at + 2 * size + 4);
  if (tlvError) return tlvError;
  return {
    version: 2,
    command: 'proxy',
    family: v4 ? 'tcp4' : 'tcp6',
    source: { address: source, port: sport },
    destination: { address: destination, port: dport },
  };
}

/**
 * TLVs are not used, but they are walked: a header whose TLVs do not add up is corrupt, and the
 * spec asks receivers that support it to verify a CRC32C TLV and refuse the connection on mismatch.
 */
function checkTlvs(buf: Buffer, from: number): ProxyHeaderError | null {
  let at = from;
  while (at < buf.length) {
    if (buf.length - at < 3) return err('v2-tlv', 'v2 TLV header runs past the end of the header');
    const type = buf[at]!;
    const length = buf.readUInt16BE(at + 1);
    const value = at + 3;
    if (value + length > buf.length) return err('v2-tlv', `v2 TLV 0x${hex(type)} runs past the end of the header`);
    if (type === PP2_TYPE_CRC32C) {
      if (length !== 4) return err('v2-tlv', 'v2 CRC32C TLV must be 4 bytes');
      const expected = buf.readUInt32BE(value);
      // The checksum is computed with its own field zeroed: compute on a copy.
      const copy = Buffer.from(buf);
      copy.fill(0, value, value + 4);
      if (crc32c(copy) !== expected) return err('v2-crc', 'v2 CRC32C does not match the header');
    }
    at = value + length;
  }
  return null;
}

function ipv4Text(buf: Buffer, at: number): string {
  return `${buf[at]}.${buf[at + 1]}.${buf[at + 2]}.${buf[at + 3]}`;
}

function ipv6Text(buf: Buffer, at: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(at + 2 * i).toString(16));
  // Every 16-byte value is a valid IPv6 address; SocketAddress writes the kernel's canonical form.
  return new SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address;
}

const hex = (byte: number): string => byte.toString(16).padStart(2, '0');

/** CRC-32C (Castagnoli, RFC 4960 appendix B), bitwise: headers are small and carry one rarely. */
export function crc32c(data: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}
