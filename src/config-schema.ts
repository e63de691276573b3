// The configuration's one source: a JSON Schema with, on every option, its default, range or
// choices, the environment variable that sets it (`env`) and its meaning (`description`). From it
// come the `Config` type (json-schema-to-ts), the defaults and the validation (ajv, in config.ts),
// the env mapping, and README's configuration table (`npm run gen:readme`; a test keeps the two in
// step). Adding an option is one line here and `npm run gen:readme`.
//
// The helpers below only add what every option of a kind repeats (`type`, and for integers the
// `int53` format; for groups `additionalProperties: false` and an empty default that the options'
// own defaults fill): the exported value is plain JSON Schema, and `as const` keeps each literal
// for the type.

/** What loadConfig and README need of one option, whatever its type. */
export interface OptionSchema {
  readonly type: 'string' | 'integer' | 'boolean';
  /** The environment variable that sets it (a string: loadConfig reads it with fromText). */
  readonly env: string;
  readonly default: string | number | boolean;
  /** Its meaning, as README's table shows it. */
  readonly description: string;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly enum?: readonly string[];
}

/** Options under one key (`tokens.ttlSeconds`, ...). */
export interface GroupSchema {
  readonly title?: string;
  readonly type: 'object';
  /** An unknown key is a mistake (a misspelt option), never something to ignore. */
  readonly additionalProperties: false;
  /** `{}` on a group, for the options' own defaults to fill when the group is left out. */
  readonly default?: Readonly<Record<string, never>>;
  readonly properties: { readonly [name: string]: OptionSchema | GroupSchema };
}

interface Described {
  readonly env: string;
  readonly description: string;
}

const str = <const S extends Described & { readonly default: string }>(s: S) => ({ type: 'string', ...s }) as const;
const choice = <const S extends Described & { readonly default: string; readonly enum: readonly string[] }>(s: S) =>
  ({ type: 'string', ...s }) as const;
// `int53`: an integer a JSON number holds exactly (|n| < 2^53), as config.ts registers it with ajv;
// a larger one would silently be another number.
const int = <const S extends Described & { readonly default: number; readonly minimum?: number; readonly maximum?: number }>(s: S) =>
  ({ type: 'integer', format: 'int53', ...s }) as const;
const bool = <const S extends Described & { readonly default: boolean }>(s: S) => ({ type: 'boolean', ...s }) as const;
const group = <const P extends GroupSchema['properties']>(properties: P) =>
  ({ type: 'object', additionalProperties: false, default: {}, properties }) as const;

// One line per option, in README's order.
export const CONFIG_SCHEMA = {
  title: 'Hellwall configuration',
  type: 'object',
  additionalProperties: false,
  properties: {
    dataDir: str({ env: 'HELLWALL_DATA_DIR', default: './data', description: 'Directory for the SQLite file, server key, dev certificate and mail outbox.' }),
    store: group({
      url: str({ env: 'HELLWALL_STORE_URL', default: '', description: 'The database. Empty: the embedded SQLite file `hellwall.db` in the data directory (one node). `postgres://user:password@host:5432/db` (TLS with `?sslmode=verify-full&sslrootcert=/path/ca.pem`): PostgreSQL, which several nodes can share. See "Several nodes".' }),
      poolMax: int({ env: 'HELLWALL_STORE_POOL_MAX', default: 10, minimum: 1, maximum: 1000, description: 'PostgreSQL: connections per node (plus one that listens for changes).' }),
      connectTimeoutMs: int({ env: 'HELLWALL_STORE_CONNECT_TIMEOUT_MS', default: 5000, minimum: 100, description: 'PostgreSQL: how long to wait for a connection, new or from the pool, before answering E_BUSY.' }),
      statementTimeoutMs: int({ env: 'HELLWALL_STORE_STATEMENT_TIMEOUT_MS', default: 5000, minimum: 100, description: 'PostgreSQL: longest a statement (or a transaction idle inside) may run.' }),
    }),
    host: str({ env: 'HELLWALL_HOST', default: '127.0.0.1', description: 'Address the TLS listener binds to.' }),
    port: int({ env: 'HELLWALL_PORT', default: 7443, minimum: 0, description: 'TLS listener port (0 picks a free port).' }),
    maxFrameBytes: int({ env: 'HELLWALL_MAX_FRAME_BYTES', default: 65536, minimum: 64, maximum: 16777216, description: 'Largest accepted frame payload in bytes [P-1.3].' }),
    maxInflight: int({ env: 'HELLWALL_MAX_INFLIGHT', default: 64, minimum: 1, description: 'Unanswered requests per connection before the server stops reading it [P-2.6].' }),
    idleTimeoutMs: int({ env: 'HELLWALL_IDLE_TIMEOUT_MS', default: 300000, minimum: 0, description: 'Close a connection with no traffic for this long (0 = never).' }),
    handshakeTimeoutMs: int({ env: 'HELLWALL_HANDSHAKE_TIMEOUT_MS', default: 10000, minimum: 100, description: 'Abort TLS handshakes that take longer than this.' }),
    maxConnections: int({ env: 'HELLWALL_MAX_CONNECTIONS', default: 10000, minimum: 1, description: 'Refuse connections beyond this many open at once. Each costs the server about 33 KiB; with `maxBufferedBytes`, the default fits a 1 GB container (SECURITY.md).' }),
    maxConnectionsPerIp: int({ env: 'HELLWALL_MAX_CONNECTIONS_PER_IP', default: 100, minimum: 1, description: 'Refuse connections from one client address beyond this many open at once (behind a trusted PROXY balancer: per client address; IPv6: per `limits.ipv6Prefix` network). Raise it for many clients behind one NAT.' }),
    maxBufferedBytes: int({ env: 'HELLWALL_MAX_BUFFERED_BYTES', default: 67108864, minimum: 64, description: 'Bytes all connections together may hold for frames not yet complete; a connection whose partial frame does not fit is closed [P-1.8]. At least `maxFrameBytes`.' }),
    frameTimeoutMs: int({ env: 'HELLWALL_FRAME_TIMEOUT_MS', default: 30000, minimum: 0, description: 'Close a connection whose frame is still incomplete this long after its first byte (slow-sending clients) [P-1.6]; 0 = never.' }),
    logLevel: choice({ env: 'HELLWALL_LOG_LEVEL', default: 'info', enum: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], description: 'pino log level.' }),
    shutdownGraceMs: int({ env: 'HELLWALL_SHUTDOWN_GRACE_MS', default: 5000, minimum: 0, maximum: 600000, description: 'On SIGTERM/SIGINT, how long open connections and queued mail get to finish before they are cut; the process then exits 0. Keep it below the orchestrator\'s stop timeout (Docker: 10 s).' }),
    workers: int({ env: 'HELLWALL_WORKERS', default: 0, minimum: 0, maximum: 256, description: 'Processes serving the TLS port (node:cluster), sharing the database; the primary process holds the health and metrics listener and runs housekeeping. 0: one per core (`os.availableParallelism()`); 1: a single process, no primary. See "Every core: workers".' }),
    ops: group({
      enabled: bool({ env: 'HELLWALL_OPS_ENABLED', default: true, description: 'Serve `/healthz`, `/readyz` and `/metrics` (Prometheus) over plain HTTP on `ops.host`:`ops.port`.' }),
      host: str({ env: 'HELLWALL_OPS_HOST', default: '127.0.0.1', description: 'Address of the health and metrics listener. Keep it on loopback or an internal network.' }),
      port: int({ env: 'HELLWALL_OPS_PORT', default: 9464, minimum: 0, maximum: 65535, description: 'Port of the health and metrics listener (0 picks a free port).' }),
    }),
    console: group({
      enabled: bool({ env: 'HELLWALL_CONSOLE_ENABLED', default: true, description: 'Serve the admin web console (HTTPS, with the TLS listener\'s certificate) on `console.host`:`console.port`; only role `admin` logs in. On with the embedded defaults (loopback only); the Docker image sets it `false`, so production turns it on deliberately. See "Console".' }),
      host: str({ env: 'HELLWALL_CONSOLE_HOST', default: '127.0.0.1', description: 'Address of the admin console. Keep it on loopback (reach it over an SSH tunnel) or an internal network.' }),
      port: int({ env: 'HELLWALL_CONSOLE_PORT', default: 7444, minimum: 0, maximum: 65535, description: 'Port of the admin console (0 picks a free port). It speaks HTTPS only: a plain-HTTP request is answered 400 and closed.' }),
      idleSeconds: int({ env: 'HELLWALL_CONSOLE_IDLE', default: 600, minimum: 60, maximum: 3600, description: 'A console session unused this long ends (the administrator logs in again); none outlives its login\'s token (`tokens.ttlSeconds`).' }),
    }),
    tls: group({
      certFile: str({ env: 'HELLWALL_TLS_CERT', default: '', description: 'PEM certificate chain. Empty: generate a development certificate in the data directory (with a warning).' }),
      keyFile: str({ env: 'HELLWALL_TLS_KEY', default: '', description: 'PEM private key for `tls.certFile`.' }),
    }),
    proxy: group({
      trusted: str({ env: 'HELLWALL_PROXY_TRUSTED', default: '', description: 'Load balancers allowed to send a PROXY protocol (v1 or v2) header naming the client address: comma-separated IPv4/IPv6 addresses and CIDR prefixes, e.g. `10.0.0.0/8, fd00::/8`. Connections from them must start with one; others are served as plain TLS. Empty: PROXY protocol off.' }),
    }),
    policy: group({
      file: str({ env: 'HELLWALL_POLICY', default: '', description: 'Authorization policy (JSON): which roles may make which requests [P-4.7]; see "Roles and policy". Re-read on SIGHUP. Empty: the built-in policy, every request allowed to `user` and `admin` (as before policies existed); production should ship a real one.' }),
      defaultDeny: bool({ env: 'HELLWALL_POLICY_DEFAULT_DENY', default: true, description: 'A request no pattern of the policy matches is denied to every role; `false` allows it to every role.' }),
    }),
    tokens: group({
      ttlSeconds: int({ env: 'HELLWALL_TOKEN_TTL', default: 3600, minimum: 1, description: 'How long a base token answers `authorized`.' }),
      idleSeconds: int({ env: 'HELLWALL_RENEW_IDLE', default: 86400, minimum: 1, description: 'A session unused this long can no longer be renewed [P-4.5].' }),
      absoluteSeconds: int({ env: 'HELLWALL_RENEW_ABSOLUTE', default: 2592000, minimum: 1, description: 'No renewal after this long since login [P-4.5].' }),
      graceSeconds: int({ env: 'HELLWALL_ROTATION_GRACE', default: 30, minimum: 0, description: 'After a renewal, the old token still yields the same new token for this long; after it, presenting the old token revokes the session [P-4.5].' }),
    }),
    sessions: group({
      maxPerUser: int({ env: 'HELLWALL_SESSIONS_MAX_PER_USER', default: 5, minimum: 1, maximum: 1000, description: 'Active sessions (devices) per operator. A login that would open one more ends the oldest (by login time) with reason `evicted` [P-3.5].' }),
    }),
    admin: group({
      reauthSeconds: int({ env: 'HELLWALL_ADMIN_REAUTH_SECONDS', default: 900, minimum: 60, maximum: 86400, description: 'Admin commands that create accounts, change roles or reset passwords over the wire need a session whose login (passcode.auth) was at most this long ago; an older one, renewed or not, is answered E_FORBIDDEN until the administrator logs in again (ASVS 6.2.2, 7.5.1).' }),
    }),
    auth: group({
      maxClockSkewSeconds: int({ env: 'HELLWALL_MAX_CLOCK_SKEW', default: 120, minimum: 1, maximum: 86400, description: 'A request carrying `clientTime` (passcode.auth, the recovery commands) further than this from the server\'s clock is refused `E_CLOCK_SKEW`, naming the skew. The server trusts its own clock: keep it NTP-disciplined.' }),
      requireClientTime: bool({ env: 'HELLWALL_REQUIRE_CLIENT_TIME', default: false, description: 'Refuse (`E_CLOCK_SKEW`) a passcode.auth or recovery request without `clientTime`. Off by default so 1.4 clients keep working [P-5.2]; turn on once every client is 1.5 or later.' }),
    }),
    factors: group({
      require: str({ env: 'HELLWALL_FACTORS_REQUIRE', default: '', description: 'Second factors each role must have, as JSON from role to factor list, e.g. `{"admin":["totp"]}`. An operator of such a role must give the factor at login (`passcode.auth` `totp`); one who has not enrolled it gets a session that can only enrol it. Empty: none required. See "Second factors".' }),
      totpIssuer: str({ env: 'HELLWALL_TOTP_ISSUER', default: 'Hellwall', description: 'The issuer an authenticator app shows beside the account (`otpauth://` URI of totp.enroll).' }),
      enrollSeconds: int({ env: 'HELLWALL_ENROLL_SESSION_SECONDS', default: 600, minimum: 60, maximum: 86400, description: 'Lifetime of an enrolment-only session (an operator whose role requires a factor they have not enrolled); it cannot be renewed.' }),
    }),
    face: group({
      enabled: bool({ env: 'HELLWALL_FACE_ENABLED', default: false, description: 'Offer the face factor (face.enroll, `face` at login). Needs the optional package: `npm run face:install`; without it the server starts and face commands answer `E_FACE_UNAVAILABLE`. A photo is not liveness: read SECURITY.md first. See "Face factor".' }),
      thresholdMilli: int({ env: 'HELLWALL_FACE_THRESHOLD_MILLI', default: 400, minimum: 200, maximum: 800, description: 'Descriptor distance, in thousandths, below which two face images count as one person (400 = 0.400). Lower rejects more; the default comes from the measurement in "Face factor".' }),
      workers: int({ env: 'HELLWALL_FACE_WORKERS', default: 1, minimum: 1, maximum: 64, description: 'Worker threads running face inference (each holds its own model copy, ~100 MB).' }),
      queueMax: int({ env: 'HELLWALL_FACE_QUEUE_MAX', default: 8, minimum: 0, maximum: 10000, description: 'Face images that may wait for a worker; beyond that a face request answers `E_BUSY`.' }),
      minFacePixels: int({ env: 'HELLWALL_FACE_MIN_PIXELS', default: 80, minimum: 32, maximum: 4096, description: 'Smallest accepted face, in pixels on the shorter side of its box; smaller answers `E_FACE_TOO_SMALL`.' }),
      maxImagePixels: int({ env: 'HELLWALL_FACE_MAX_IMAGE_PIXELS', default: 4000000, minimum: 10000, maximum: 40000000, description: 'Largest decoded face image, in pixels (width times height); larger answers `E_FACE_IMAGE` before decoding.' }),
    }),
    devices: group({
      requireRegistered: bool({ env: 'HELLWALL_DEVICES_REQUIRE_REGISTERED', default: false, description: 'Logins only from devices (MACs) an administrator registered for the operator (`hellwall user device add`, admin.device.register) or the operator registered by recovery; any other MAC fails login like a wrong factor (`E_AUTH_FAILED`).' }),
      requireRegisteredRoles: str({ env: 'HELLWALL_DEVICES_REQUIRE_REGISTERED_ROLES', default: '', description: 'Comma-separated roles for which `devices.requireRegistered` applies even when it is off, e.g. `admin`.' }),
    }),
    alerts: group({
      newDevice: bool({ env: 'HELLWALL_ALERT_NEW_DEVICE', default: true, description: 'Mail the operator after a login from a MAC or an address group not seen before for them.' }),
      passwordChanged: bool({ env: 'HELLWALL_ALERT_PASSWORD_CHANGED', default: true, description: 'Mail the operator when their password is changed (by them or an administrator).' }),
      totpEnrolled: bool({ env: 'HELLWALL_ALERT_TOTP_ENROLLED', default: true, description: 'Mail the operator when an authenticator app is enrolled.' }),
      totpRemoved: bool({ env: 'HELLWALL_ALERT_TOTP_REMOVED', default: true, description: 'Mail the operator when their authenticator app is removed.' }),
      recoveryCodeUsed: bool({ env: 'HELLWALL_ALERT_RECOVERY_CODE_USED', default: true, description: 'Mail the operator when one of their recovery codes is used.' }),
      accountLocked: bool({ env: 'HELLWALL_ALERT_ACCOUNT_LOCKED', default: true, description: 'Mail the operator when too many attempts lock their account (`limits.lockoutFailures`).' }),
      sessionReuse: bool({ env: 'HELLWALL_ALERT_SESSION_REUSE', default: true, description: 'Mail the operator when reuse of a rotated-out token revokes one of their sessions.' }),
      disabled: str({ env: 'HELLWALL_ALERTS_DISABLED', default: '', description: 'Comma-separated alerts switched off, by name (`new-device`, `password-changed`, `totp-enrolled`, `totp-removed`, `recovery-code-used`, `account-locked`, `session-reuse`) or `all`; the same as setting each one\'s option above to false.' }),
    }),
    passcodes: group({
      ttlSeconds: int({ env: 'HELLWALL_PASSCODE_TTL', default: 180, minimum: 10, description: 'Passcode lifetime.' }),
      maxAttempts: int({ env: 'HELLWALL_PASSCODE_MAX_ATTEMPTS', default: 5, minimum: 1, description: 'Failed passcode.auth attempts after which a pending passcode is void.' }),
    }),
    passwords: group({
      hashConcurrency: int({ env: 'HELLWALL_HASH_CONCURRENCY', default: 2, minimum: 1, description: 'Password hashes computed at once (at most the number of cores less one, whatever is set: each takes a core, and token checks need one); the rest queue, so logins cannot starve token checks.' }),
      hashQueueMax: int({ env: 'HELLWALL_HASH_QUEUE_MAX', default: 256, minimum: 1, description: 'Queued password hashes beyond which requests answer `E_BUSY`.' }),
    }),
    housekeeping: group({
      intervalSeconds: int({ env: 'HELLWALL_HOUSEKEEPING_INTERVAL', default: 60, minimum: 0, maximum: 86400, description: 'How often the server deletes expired passcodes and dead sessions (with their retired tokens); 0 = never (run `hellwall cleanup` instead).' }),
      batchSize: int({ env: 'HELLWALL_HOUSEKEEPING_BATCH', default: 500, minimum: 1, maximum: 100000, description: 'Rows deleted per table per transaction; requests are served between batches, so this bounds how long housekeeping holds the event loop and the write lock.' }),
      keepRevokedSeconds: int({ env: 'HELLWALL_KEEP_REVOKED', default: 604800, minimum: 0, description: 'How long a revoked session (logout, reuse detection, disabled account, retired key) is kept for investigation before housekeeping deletes it.' }),
    }),
    audit: group({
      retentionDays: int({ env: 'HELLWALL_AUDIT_RETENTION_DAYS', default: 365, minimum: 0, maximum: 36500, description: 'How long audit rows are kept; housekeeping deletes older ones in the same small batches. 0 = keep forever (then archive and prune them yourself).' }),
    }),
    limits: group({
      enabled: bool({ env: 'HELLWALL_LIMITS', default: true, description: 'Apply the rate limits and lockout below [P-2.8]. Turn off only where another layer enforces them.' }),
      ipPasscodeRequestsPerMinute: int({ env: 'HELLWALL_LIMIT_IP_PASSCODE_REQUESTS', default: 30, minimum: 1, description: 'Passcode requests per minute from one address (also the burst) [P-2.8].' }),
      ipLoginsPerMinute: int({ env: 'HELLWALL_LIMIT_IP_LOGINS', default: 30, minimum: 1, description: 'passcode.auth attempts per minute from one address (also the burst) [P-2.8].' }),
      ipFailedChecksPerMinute: int({ env: 'HELLWALL_LIMIT_IP_FAILED_CHECKS', default: 120, minimum: 1, description: 'Token checks answered `unauthorized` per minute from one address before its checks are refused (also the burst) [P-2.8].' }),
      freeFailures: int({ env: 'HELLWALL_LIMIT_FREE_FAILURES', default: 5, minimum: 1, description: 'Password attempts (passcode.request, passcode.auth, password.change) for one account from one address, counted when admitted and released only by a completed login, before each further attempt must wait (1 s, doubling).' }),
      backoffMaxSeconds: int({ env: 'HELLWALL_LIMIT_BACKOFF_MAX', default: 900, minimum: 1, description: 'Longest wait the per-account-and-address backoff imposes.' }),
      lockoutFailures: int({ env: 'HELLWALL_LIMIT_LOCKOUT_FAILURES', default: 100, minimum: 1, maximum: 100, description: 'Attempts for one account from any address, counted when admitted and released only by a completed login, that lock it for `limits.lockoutSeconds` (NIST SP 800-63B: at most 100). Address groups where the account logged in before are not held by the lockout.' }),
      lockoutSeconds: int({ env: 'HELLWALL_LIMIT_LOCKOUT_SECONDS', default: 900, minimum: 1, description: 'How long a locked account waits; the count then starts afresh.' }),
      passcodesPerHour: int({ env: 'HELLWALL_LIMIT_PASSCODES_PER_HOUR', default: 6, minimum: 1, maximum: 100000, description: 'Passcodes issued to one account per hour; further right-password requests answer alike but send none. With `passcodes.maxAttempts` this bounds second-factor guesses a day (SECURITY.md).' }),
      ipv6Prefix: int({ env: 'HELLWALL_LIMITS_IPV6_PREFIX', default: 64, minimum: 32, maximum: 128, description: 'IPv6 clients are counted per network of this prefix length by every per-address limit (the limits above and `maxConnectionsPerIp`): one subscriber usually holds a whole /64. IPv4 clients are counted per address.' }),
      maxTracked: int({ env: 'HELLWALL_LIMIT_MAX_TRACKED', default: 100000, minimum: 100, description: 'Addresses and accounts tracked per limit table; the least recently seen are forgotten beyond it, so memory stays bounded.' }),
    }),
    mail: group({
      from: str({ env: 'HELLWALL_MAIL_FROM', default: 'Hellwall <hellwall@localhost>', description: 'Sender address of passcode emails.' }),
      smtpHost: str({ env: 'HELLWALL_SMTP_HOST', default: '', description: 'SMTP server. Empty: write each message as an .eml file into `<dataDir>/outbox` (development only).' }),
      smtpPort: int({ env: 'HELLWALL_SMTP_PORT', default: 587, minimum: 1, description: 'SMTP port.' }),
      smtpSecurity: choice({ env: 'HELLWALL_SMTP_SECURITY', default: 'starttls', enum: ['tls', 'starttls', 'none'], description: '`tls` (implicit TLS, usually port 465), `starttls` (required upgrade), or `none` (plain; local relays only).' }),
      smtpUser: str({ env: 'HELLWALL_SMTP_USER', default: '', description: 'SMTP username (empty: no authentication).' }),
      smtpPass: str({ env: 'HELLWALL_SMTP_PASS', default: '', description: 'SMTP password.' }),
      smtpRejectUnauthorized: bool({ env: 'HELLWALL_SMTP_TLS_VERIFY', default: true, description: 'Verify the SMTP server\'s certificate.' }),
    }),
  },
} as const satisfies GroupSchema;
