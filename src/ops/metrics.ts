// Imports nothing: the mailer, the audit log, the dispatcher and the services take `Metrics` (or
// `NO_METRICS`) without loading prom-client. The Prometheus exporter is ops/prometheus.ts, which
// only the app builder imports.

/**
 * What the service reports about itself. Components take this interface, not prom-client, so
 * they stay testable with `NO_METRICS` and a second exporter would be an addition.
 */
export interface Metrics {
  /** One answered request: `outcome` is the response status, or the error code for errors. */
  request(command: string, outcome: string, seconds: number): void;
  connectionOpened(): void;
  connectionClosed(): void;
  /** A connection refused or cut by a limit (`reason`: max_connections, idle, handshake, framing ...). */
  connectionRefused(reason: string): void;
  mail(outcome: 'sent' | 'failed' | 'retried'): void;
  /** A request refused to protect the service (E_BUSY and, later, rate limits). */
  throttled(reason: string): void;
  renewal(): void;
  reuseDetected(): void;
  reload(what: string, outcome: 'ok' | 'failed'): void;
  /** Rows housekeeping deleted from `table` (passcodes, sessions, retiredTokens, auditRows). */
  housekeeping(table: string, rows: number): void;
  /**
   * Audit events written; dropped because the database refused them for too long; or coalesced
   * (a repeated refusal counted in the next row for it instead of a row of its own).
   */
  audit(outcome: 'written' | 'dropped' | 'coalesced' | 'suppressed', events: number): void;
}

export const NO_METRICS: Metrics = {
  request() {},
  connectionOpened() {},
  connectionClosed() {},
  connectionRefused() {},
  mail() {},
  throttled() {},
  renewal() {},
  reuseDetected() {},
  reload() {},
  housekeeping() {},
  audit() {},
};

/** What `/metrics` serves: the exposition text and its content type (ops/prometheus.ts provides one). */
export interface MetricsExposition {
  readonly contentType: string;
  render(): Promise<string>;
}
