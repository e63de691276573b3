import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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
};

export interface PrometheusMetrics extends Metrics {
  readonly registry: Registry;
  /** The exposition text for `/metrics`. */
  render(): Promise<string>;
}

/**
 * prom-client instruments in a registry of their own (never the global one: two apps in one
 * process, as in the tests, must not share counters). `activeSessions` is read from the store
 * when scraped rather than kept in step on every login and revocation.
 */
export function createPrometheusMetrics(opts: { activeSessions: () => number; defaultMetrics?: boolean }): PrometheusMetrics {
  const registry = new Registry();
  const registers = [registry];
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'hellwall_' });

  const requests = new Counter({
    name: 'hellwall_requests_total',
    help: 'Answered requests by command and outcome (response status, or error code).',
    labelNames: ['command', 'outcome'] as const,
    registers,
  });
  const latency = new Histogram({
    name: 'hellwall_request_duration_seconds',
    help: 'Time from a request being read to its answer being ready, by command.',
    labelNames: ['command'] as const,
    // Token checks take microseconds, logins tens to hundreds of milliseconds (scrypt).
    buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers,
  });
  const open = new Gauge({ name: 'hellwall_connections_open', help: 'Open client connections (TLS established).', registers });
  const accepted = new Counter({ name: 'hellwall_connections_total', help: 'Client connections accepted (TLS established).', registers });
  const refused = new Counter({
    name: 'hellwall_connections_refused_total',
    help: 'Connections refused or closed by a limit, by reason.',
    labelNames: ['reason'] as const,
    registers,
  });
  const mail = new Counter({
    name: 'hellwall_mail_total',
    help: 'Passcode mails by outcome: sent, retried (an attempt failed and will be retried), failed (gave up).',
    labelNames: ['outcome'] as const,
    registers,
  });
  const throttled = new Counter({
    name: 'hellwall_throttled_total',
    help: 'Requests refused to protect the service, by reason.',
    labelNames: ['reason'] as const,
    registers,
  });
  const renewals = new Counter({ name: 'hellwall_token_renewals_total', help: 'Tokens renewed (rotated) by token.check.', registers });
  const reuse = new Counter({
    name: 'hellwall_token_reuse_detected_total',
    help: 'Rotated-out tokens presented after the grace; each revoked its session.',
    registers,
  });
  const reloads = new Counter({
    name: 'hellwall_reloads_total',
    help: 'Configuration reloads (SIGHUP) by what was reloaded and outcome.',
    labelNames: ['what', 'outcome'] as const,
    registers,
  });
  new Gauge({
    name: 'hellwall_sessions_active',
    help: 'Sessions not revoked, inside their absolute limit and used within the idle limit.',
    registers,
    collect() {
      this.set(opts.activeSessions());
    },
  });

  // Label lookups cost more than the increment; the hot path reuses the children.
  const requestChildren = new Map<string, Counter.Internal>();
  const latencyChildren = new Map<string, Histogram.Internal<'command'>>();

  return {
    registry,
    render: () => registry.metrics(),
    request(command, outcome, seconds) {
      const key = `${command}\0${outcome}`;
      let counter = requestChildren.get(key);
      if (!counter) requestChildren.set(key, (counter = requests.labels(command, outcome)));
      counter.inc();
      let histogram = latencyChildren.get(command);
      if (!histogram) latencyChildren.set(command, (histogram = latency.labels(command)));
      histogram.observe(seconds);
    },
    connectionOpened() {
      open.inc();
      accepted.inc();
    },
    connectionClosed() {
      open.dec();
    },
    connectionRefused(reason) {
      refused.labels(reason).inc();
    },
    mail(outcome) {
      mail.labels(outcome).inc();
    },
    throttled(reason) {
      throttled.labels(reason).inc();
    },
    renewal() {
      renewals.inc();
    },
    reuseDetected() {
      reuse.inc();
    },
    reload(what, outcome) {
      reloads.labels(what, outcome).inc();
    },
  };
}
