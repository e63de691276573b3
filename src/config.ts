import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseTrustedProxies } from './server/proxy-protocol.js';

export type SmtpSecurity = 'tls' | 'starttls' | 'none';

export interface Config {
  readonly dataDir: string;
  readonly store: {
    readonly url: string;
    readonly poolMax: number;
    readonly connectTimeoutMs: number;
    readonly statementTimeoutMs: number;
  };
  readonly host: string;
  readonly port: number;
  readonly maxFrameBytes: number;
  readonly maxInflight: number;
  readonly idleTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  readonly maxConnections: number;
  readonly maxConnectionsPerIp: number;
  readonly maxBufferedBytes: number;
  readonly frameTimeoutMs: number;
  readonly logLevel: string;
  readonly shutdownGraceMs: number;
  readonly ops: {
    readonly enabled: boolean;
    readonly host: string;
    readonly port: number;
  };
  readonly tls: {
    readonly certFile: string;
    readonly keyFile: string;
  };
  readonly proxy: {
    readonly trusted: string;
  };
  readonly policy: {
    readonly file: string;
    readonly defaultDeny: boolean;
  };
  readonly tokens: {
    readonly ttlSeconds: number;
    readonly idleSeconds: number;
    readonly absoluteSeconds: number;
    readonly graceSeconds: number;
  };
  readonly sessions: {
    readonly maxPerUser: number;
  };
  readonly admin: {
    readonly reauthSeconds: number;
  };
  readonly passcodes: {
    readonly ttlSeconds: number;
    readonly maxAttempts: number;
  };
  readonly passwords: {
    readonly hashConcurrency: number;
    readonly hashQueueMax: number;
  };
  readonly housekeeping: {
    readonly intervalSeconds: number;
    readonly batchSize: number;
    readonly keepRevokedSeconds: number;
  };
  readonly audit: {
    readonly retentionDays: number;
  };
  readonly limits: {
    readonly enabled: boolean;
    readonly ipPasscodeRequestsPerMinute: number;
    readonly ipLoginsPerMinute: number;
    readonly ipFailedChecksPerMinute: number;
    readonly freeFailures: number;
    readonly backoffMaxSeconds: number;
    readonly lockoutFailures: number;
    readonly lockoutSeconds: number;
    readonly maxTracked: number;
    readonly passcodesPerHour: number;
    readonly ipv6Prefix: number;
  };
  readonly mail: {
    readonly from: string;
    readonly smtpHost: string;
    readonly smtpPort: number;
    readonly smtpSecurity: SmtpSecurity;
    readonly smtpUser: string;
    readonly smtpPass: string;
    readonly smtpRejectUnauthorized: boolean;
  };
}

type Kind = 'string' | 'int' | 'bool' | 'enum';

/** One configurable option: where it lives in Config, its env var, default and meaning. */
export interface OptionSpec {
  readonly key: string;
  readonly env: string;
  readonly kind: Kind;
  readonly default: string | number | boolean;
  readonly min?: number;
  readonly max?: number;
  readonly values?: readonly string[];
  readonly doc: string;
}

// The single table of options. README's configuration table is written from it and a test keeps
// the two in step, so an option cannot exist without documentation.
export const OPTIONS: readonly OptionSpec[] = [
  { key: 'dataDir', env: 'HELLWALL_DATA_DIR', kind: 'string', default: './data', doc: 'Directory for the SQLite file, server key, dev certificate and mail outbox.' },
  { key: 'store.url', env: 'HELLWALL_STORE_URL', kind: 'string', default: '', doc: 'The database. Empty: the embedded SQLite file `hellwall.db` in the data directory (one node). `postgres://user:password@host:5432/db` (TLS with `?sslmode=verify-full&sslrootcert=/path/ca.pem`): PostgreSQL, which several nodes can share. See "Several nodes".' },
  { key: 'store.poolMax', env: 'HELLWALL_STORE_POOL_MAX', kind: 'int', default: 10, min: 1, max: 1000, doc: 'PostgreSQL: connections per node (plus one that listens for changes).' },
  { key: 'store.connectTimeoutMs', env: 'HELLWALL_STORE_CONNECT_TIMEOUT_MS', kind: 'int', default: 5000, min: 100, doc: 'PostgreSQL: how long to wait for a connection, new or from the pool, before answering E_BUSY.' },
  { key: 'store.statementTimeoutMs', env: 'HELLWALL_STORE_STATEMENT_TIMEOUT_MS', kind: 'int', default: 5000, min: 100, doc: 'PostgreSQL: longest a statement (or a transaction idle inside) may run.' },
  { key: 'host', env: 'HELLWALL_HOST', kind: 'string', default: '127.0.0.1', doc: 'Address the TLS listener binds to.' },
  { key: 'port', env: 'HELLWALL_PORT', kind: 'int', default: 7443, min: 0, doc: 'TLS listener port (0 picks a free port).' },
  { key: 'maxFrameBytes', env: 'HELLWALL_MAX_FRAME_BYTES', kind: 'int', default: 65536, min: 64, max: 16777216, doc: 'Largest accepted frame payload in bytes [P-1.3].' },
  { key: 'maxInflight', env: 'HELLWALL_MAX_INFLIGHT', kind: 'int', default: 64, min: 1, doc: 'Unanswered requests per connection before the server stops reading it [P-2.6].' },
  { key: 'idleTimeoutMs', env: 'HELLWALL_IDLE_TIMEOUT_MS', kind: 'int', default: 300000, min: 0, doc: 'Close a connection with no traffic for this long (0 = never).' },
  { key: 'handshakeTimeoutMs', env: 'HELLWALL_HANDSHAKE_TIMEOUT_MS', kind: 'int', default: 10000, min: 100, doc: 'Abort TLS handshakes that take longer than this.' },
  { key: 'maxConnections', env: 'HELLWALL_MAX_CONNECTIONS', kind: 'int', default: 10000, min: 1, doc: 'Refuse connections beyond this many open at once. Each costs the server about 33 KiB; with `maxBufferedBytes`, the default fits a 1 GB container (SECURITY.md).' },
  { key: 'maxConnectionsPerIp', env: 'HELLWALL_MAX_CONNECTIONS_PER_IP', kind: 'int', default: 100, min: 1, doc: 'Refuse connections from one client address beyond this many open at once (behind a trusted PROXY balancer: per client address; IPv6: per `limits.ipv6Prefix` network). Raise it for many clients behind one NAT.' },
  { key: 'maxBufferedBytes', env: 'HELLWALL_MAX_BUFFERED_BYTES', kind: 'int', default: 67108864, min: 64, doc: 'Bytes all connections together may hold for frames not yet complete; a connection whose partial frame does not fit is closed [P-1.8]. At least `maxFrameBytes`.' },
  { key: 'frameTimeoutMs', env: 'HELLWALL_FRAME_TIMEOUT_MS', kind: 'int', default: 30000, min: 0, doc: 'Close a connection whose frame is still incomplete this long after its first byte (slow-sending clients) [P-1.6]; 0 = never.' },
  { key: 'logLevel', env: 'HELLWALL_LOG_LEVEL', kind: 'enum', default: 'info', values: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], doc: 'pino log level.' },
  { key: 'shutdownGraceMs', env: 'HELLWALL_SHUTDOWN_GRACE_MS', kind: 'int', default: 5000, min: 0, max: 600000, doc: 'On SIGTERM/SIGINT, how long open connections and queued mail get to finish before they are cut; the process then exits 0. Keep it below the orchestrator\'s stop timeout (Docker: 10 s).' },
  { key: 'ops.enabled', env: 'HELLWALL_OPS_ENABLED', kind: 'bool', default: true, doc: 'Serve `/healthz`, `/readyz` and `/metrics` (Prometheus) over plain HTTP on `ops.host`:`ops.port`.' },
  { key: 'ops.host', env: 'HELLWALL_OPS_HOST', kind: 'string', default: '127.0.0.1', doc: 'Address of the health and metrics listener. Keep it on loopback or an internal network.' },
  { key: 'ops.port', env: 'HELLWALL_OPS_PORT', kind: 'int', default: 9464, min: 0, max: 65535, doc: 'Port of the health and metrics listener (0 picks a free port).' },
  { key: 'tls.certFile', env: 'HELLWALL_TLS_CERT', kind: 'string', default: '', doc: 'PEM certificate chain. Empty: generate a development certificate in the data directory (with a warning).' },
  { key: 'tls.keyFile', env: 'HELLWALL_TLS_KEY', kind: 'string', default: '', doc: 'PEM private key for `tls.certFile`.' },
  { key: 'proxy.trusted', env: 'HELLWALL_PROXY_TRUSTED', kind: 'string', default: '', doc: 'Load balancers allowed to send a PROXY protocol (v1 or v2) header naming the client address: comma-separated IPv4/IPv6 addresses and CIDR prefixes, e.g. `10.0.0.0/8, fd00::/8`. Connections from them must start with one; others are served as plain TLS. Empty: PROXY protocol off.' },
  { key: 'policy.file', env: 'HELLWALL_POLICY', kind: 'string', default: '', doc: 'Authorization policy (JSON): which roles may make which requests [P-4.7]; see "Roles and policy". Re-read on SIGHUP. Empty: the built-in policy, every request allowed to `user` and `admin` (as before policies existed); production should ship a real one.' },
  { key: 'policy.defaultDeny', env: 'HELLWALL_POLICY_DEFAULT_DENY', kind: 'bool', default: true, doc: 'A request no pattern of the policy matches is denied to every role; `false` allows it to every role.' },
  { key: 'tokens.ttlSeconds', env: 'HELLWALL_TOKEN_TTL', kind: 'int', default: 3600, min: 1, doc: 'How long a base token answers `authorized`.' },
  { key: 'tokens.idleSeconds', env: 'HELLWALL_RENEW_IDLE', kind: 'int', default: 86400, min: 1, doc: 'A session unused this long can no longer be renewed [P-4.5].' },
  { key: 'tokens.absoluteSeconds', env: 'HELLWALL_RENEW_ABSOLUTE', kind: 'int', default: 2592000, min: 1, doc: 'No renewal after this long since login [P-4.5].' },
  { key: 'tokens.graceSeconds', env: 'HELLWALL_ROTATION_GRACE', kind: 'int', default: 30, min: 0, doc: 'After a renewal, the old token still yields the same new token for this long; after it, presenting the old token revokes the session [P-4.5].' },
  { key: 'sessions.maxPerUser', env: 'HELLWALL_SESSIONS_MAX_PER_USER', kind: 'int', default: 5, min: 1, max: 1000, doc: 'Active sessions (devices) per operator. A login that would open one more ends the oldest (by login time) with reason `evicted` [P-3.5].' },
  { key: 'admin.reauthSeconds', env: 'HELLWALL_ADMIN_REAUTH_SECONDS', kind: 'int', default: 900, min: 60, max: 86400, doc: 'Admin commands that create accounts, change roles or reset passwords over the wire need a session whose login (passcode.auth) was at most this long ago; an older one, renewed or not, is answered E_FORBIDDEN until the administrator logs in again (ASVS 6.2.2, 7.5.1).' },
  { key: 'passcodes.ttlSeconds', env: 'HELLWALL_PASSCODE_TTL', kind: 'int', default: 180, min: 10, doc: 'Passcode lifetime.' },
  { key: 'passcodes.maxAttempts', env: 'HELLWALL_PASSCODE_MAX_ATTEMPTS', kind: 'int', default: 5, min: 1, doc: 'Failed passcode.auth attempts after which a pending passcode is void.' },
  { key: 'passwords.hashConcurrency', env: 'HELLWALL_HASH_CONCURRENCY', kind: 'int', default: 2, min: 1, doc: 'Password hashes computed at once; the rest queue, so logins cannot starve token checks.' },
  { key: 'passwords.hashQueueMax', env: 'HELLWALL_HASH_QUEUE_MAX', kind: 'int', default: 256, min: 1, doc: 'Queued password hashes beyond which requests answer `E_BUSY`.' },
  { key: 'housekeeping.intervalSeconds', env: 'HELLWALL_HOUSEKEEPING_INTERVAL', kind: 'int', default: 60, min: 0, max: 86400, doc: 'How often the server deletes expired passcodes and dead sessions (with their retired tokens); 0 = never (run `hellwall cleanup` instead).' },
  { key: 'housekeeping.batchSize', env: 'HELLWALL_HOUSEKEEPING_BATCH', kind: 'int', default: 500, min: 1, max: 100000, doc: 'Rows deleted per table per transaction; requests are served between batches, so this bounds how long housekeeping holds the event loop and the write lock.' },
  { key: 'housekeeping.keepRevokedSeconds', env: 'HELLWALL_KEEP_REVOKED', kind: 'int', default: 604800, min: 0, doc: 'How long a revoked session (logout, reuse detection, disabled account, retired key) is kept for investigation before housekeeping deletes it.' },
  { key: 'audit.retentionDays', env: 'HELLWALL_AUDIT_RETENTION_DAYS', kind: 'int', default: 365, min: 0, max: 36500, doc: 'How long audit rows are kept; housekeeping deletes older ones in the same small batches. 0 = keep forever (then archive and prune them yourself).' },
  { key: 'limits.enabled', env: 'HELLWALL_LIMITS', kind: 'bool', default: true, doc: 'Apply the rate limits and lockout below [P-2.8]. Turn off only where another layer enforces them.' },
  { key: 'limits.ipPasscodeRequestsPerMinute', env: 'HELLWALL_LIMIT_IP_PASSCODE_REQUESTS', kind: 'int', default: 30, min: 1, doc: 'Passcode requests per minute from one address (also the burst) [P-2.8].' },
  { key: 'limits.ipLoginsPerMinute', env: 'HELLWALL_LIMIT_IP_LOGINS', kind: 'int', default: 30, min: 1, doc: 'passcode.auth attempts per minute from one address (also the burst) [P-2.8].' },
  { key: 'limits.ipFailedChecksPerMinute', env: 'HELLWALL_LIMIT_IP_FAILED_CHECKS', kind: 'int', default: 120, min: 1, doc: 'Token checks answered `unauthorized` per minute from one address before its checks are refused (also the burst) [P-2.8].' },
  { key: 'limits.freeFailures', env: 'HELLWALL_LIMIT_FREE_FAILURES', kind: 'int', default: 5, min: 1, doc: 'Failed password or passcode attempts for one account from one address before each further attempt must wait (1 s, doubling).' },
  { key: 'limits.backoffMaxSeconds', env: 'HELLWALL_LIMIT_BACKOFF_MAX', kind: 'int', default: 900, min: 1, doc: 'Longest wait the per-account-and-address backoff imposes.' },
  { key: 'limits.lockoutFailures', env: 'HELLWALL_LIMIT_LOCKOUT_FAILURES', kind: 'int', default: 100, min: 1, max: 100, doc: 'Consecutive failures for one account, from any address, that lock it for `limits.lockoutSeconds` (NIST SP 800-63B: at most 100).' },
  { key: 'limits.lockoutSeconds', env: 'HELLWALL_LIMIT_LOCKOUT_SECONDS', kind: 'int', default: 900, min: 1, doc: 'How long a locked account waits; each further failure locks it again until a success.' },
  { key: 'limits.passcodesPerHour', env: 'HELLWALL_LIMIT_PASSCODES_PER_HOUR', kind: 'int', default: 6, min: 1, max: 100000, doc: 'Passcodes issued to one account per hour; further right-password requests answer alike but send none. With `passcodes.maxAttempts` this bounds second-factor guesses a day (SECURITY.md).' },
  { key: 'limits.ipv6Prefix', env: 'HELLWALL_LIMITS_IPV6_PREFIX', kind: 'int', default: 64, min: 32, max: 128, doc: 'IPv6 clients are counted per network of this prefix length by every per-address limit (the limits above and `maxConnectionsPerIp`): one subscriber usually holds a whole /64. IPv4 clients are counted per address.' },
  { key: 'limits.maxTracked', env: 'HELLWALL_LIMIT_MAX_TRACKED', kind: 'int', default: 100000, min: 100, doc: 'Addresses and accounts tracked per limit table; the least recently seen are forgotten beyond it, so memory stays bounded.' },
  { key: 'mail.from', env: 'HELLWALL_MAIL_FROM', kind: 'string', default: 'Hellwall <hellwall@localhost>', doc: 'Sender address of passcode emails.' },
  { key: 'mail.smtpHost', env: 'HELLWALL_SMTP_HOST', kind: 'string', default: '', doc: 'SMTP server. Empty: write each message as an .eml file into `<dataDir>/outbox` (development only).' },
  { key: 'mail.smtpPort', env: 'HELLWALL_SMTP_PORT', kind: 'int', default: 587, min: 1, doc: 'SMTP port.' },
  { key: 'mail.smtpSecurity', env: 'HELLWALL_SMTP_SECURITY', kind: 'enum', default: 'starttls', values: ['tls', 'starttls', 'none'], doc: '`tls` (implicit TLS, usually port 465), `starttls` (required upgrade), or `none` (plain; local relays only).' },
  { key: 'mail.smtpUser', env: 'HELLWALL_SMTP_USER', kind: 'string', default: '', doc: 'SMTP username (empty: no authentication).' },
  { key: 'mail.smtpPass', env: 'HELLWALL_SMTP_PASS', kind: 'string', default: '', doc: 'SMTP password.' },
  { key: 'mail.smtpRejectUnauthorized', env: 'HELLWALL_SMTP_TLS_VERIFY', kind: 'bool', default: true, doc: 'Verify the SMTP server\'s certificate.' },
];

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** A partial config as read from a file or given by tests: nested plain values. */
export type ConfigInput = { [key: string]: unknown };

function getPath(obj: ConfigInput | undefined, key: string): unknown {
  let cur: unknown = obj;
  for (const part of key.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function setPath(obj: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  let cur = obj;
  for (const part of parts.slice(0, -1)) {
    cur[part] ??= {};
    cur = cur[part] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]!] = value;
}

function coerce(spec: OptionSpec, raw: unknown, source: string): string | number | boolean {
  const fail = (why: string): never => {
    throw new ConfigError(`invalid option ${spec.key} (${source}): ${why}`);
  };
  switch (spec.kind) {
    case 'string':
      if (typeof raw !== 'string') fail('expected a string');
      return raw as string;
    case 'enum':
      if (typeof raw !== 'string' || !spec.values!.includes(raw)) fail(`expected one of ${spec.values!.join(', ')}`);
      return raw as string;
    case 'bool':
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      return fail('expected true or false');
    case 'int': {
      const n = typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : raw;
      if (typeof n !== 'number' || !Number.isSafeInteger(n)) fail('expected an integer');
      if (spec.min !== undefined && (n as number) < spec.min) fail(`must be at least ${spec.min}`);
      if (spec.max !== undefined && (n as number) > spec.max) fail(`must be at most ${spec.max}`);
      return n as number;
    }
  }
}

function deepFreeze<T>(obj: T): T {
  for (const value of Object.values(obj as object)) {
    if (value && typeof value === 'object') deepFreeze(value);
  }
  return Object.freeze(obj);
}

/**
 * Builds the configuration: defaults, then the JSON file named by HELLWALL_CONFIG (or `file`),
 * then environment variables, then `overrides`. Validated and frozen; the only reader of env.
 */
export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  overrides: ConfigInput = {},
  file: string | undefined = env.HELLWALL_CONFIG,
): Config {
  let fromFile: ConfigInput = {};
  if (file) {
    try {
      fromFile = JSON.parse(readFileSync(file, 'utf8')) as ConfigInput;
    } catch (err) {
      throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
    }
  }
  const known = new Set(OPTIONS.map((o) => o.key));
  for (const [name, layer] of [['config file', fromFile], ['overrides', overrides]] as const) {
    for (const key of leafKeys(layer)) {
      if (!known.has(key)) throw new ConfigError(`unknown option ${key} (${name})`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const spec of OPTIONS) {
    let value = spec.default;
    const layers: Array<[unknown, string]> = [
      [getPath(fromFile, spec.key), `config file ${file ?? ''}`.trim()],
      [env[spec.env], `env ${spec.env}`],
      [getPath(overrides, spec.key), 'overrides'],
    ];
    for (const [raw, source] of layers) {
      if (raw !== undefined) value = coerce(spec, raw, source);
    }
    setPath(out, spec.key, value);
  }
  out.dataDir = path.resolve(out.dataDir as string);
  const config = out as unknown as Config;
  // A string option with a grammar of its own: parsed once here only to refuse a bad entry at
  // start-up (the listener parses it again when it is built).
  try {
    parseTrustedProxies(config.proxy.trusted);
  } catch (err) {
    throw new ConfigError(`invalid option proxy.trusted: ${(err as Error).message}`);
  }
  checkCombinations(config);
  return deepFreeze(config);
}

/** Options that are each valid but together unsafe or meaningless. */
function checkCombinations(config: Config): void {
  const fail = (keys: string, why: string): never => {
    throw new ConfigError(`invalid option ${keys}: ${why}`);
  };
  const { tokens, tls, mail } = config;
  if (Boolean(tls.certFile) !== Boolean(tls.keyFile)) fail('tls.certFile/tls.keyFile', 'set both or neither');
  // A grace as long as the token's life would let a stolen, rotated-out token be replayed
  // without ever tripping reuse detection.
  if (tokens.graceSeconds >= tokens.ttlSeconds) fail('tokens.graceSeconds', 'must be shorter than tokens.ttlSeconds');
  if (tokens.ttlSeconds > tokens.absoluteSeconds) fail('tokens.ttlSeconds', 'must not exceed tokens.absoluteSeconds');
  // Otherwise a frame of the largest allowed size could never be received in more than one read.
  if (config.maxBufferedBytes < config.maxFrameBytes) fail('maxBufferedBytes', 'must be at least maxFrameBytes');
  if (mail.smtpSecurity === 'none' && mail.smtpUser) {
    fail('mail.smtpSecurity', "'none' with mail.smtpUser would send the SMTP password in clear");
  }
}

function leafKeys(obj: ConfigInput, prefix = ''): string[] {
  const keys: string[] = [];
  for (const [k, v] of Object.entries(obj)) {
    if (k === '$comment') continue;
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v)) keys.push(...leafKeys(v as ConfigInput, key));
    else keys.push(key);
  }
  return keys;
}
