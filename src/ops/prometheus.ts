import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Metrics, MetricsExposition } from './metrics.js';

export interface PrometheusMetrics extends Metrics, MetricsExposition {
  readonly registry: Registry;
  /** Client connections open now (the `hellwall_connections_open` gauge), read synchronously. */
  connectionsOpen(): number;
}

/**
 * prom-client instruments in a registry of their own (never the global one: two apps in one
 * process, as in the tests, must not share counters). `activeSessions` is read from the store
 * when scraped rather than kept in step on every login and revocation; the count runs off the event
 * loop (the store's reader thread on SQLite), and scrapes that arrive while one is under way share
 * it. Without `activeSessions` the gauge is left out: with workers, the primary alone reports it.
 */
export function createPrometheusMetrics(opts: { activeSessions?: () => Promise<number>; defaultMetrics?: boolean }): PrometheusMetrics {
  const registry = new Registry();
  const registers = [registry];
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'hellwall_' });

  // Requests are counted on the token-check hot path, where prom-client's label hashing would cost
  // about 0.8 µs per request (about 10 % of a check). Plain counters are kept here instead and
  // turned into exposition samples only when scraped.
  const requests = new RequestStats(LATENCY_BUCKETS);
  registry.registerMetric(requests.counterMetric('hellwall_requests_total', 'Answered requests by command and outcome (response status, or error code).') as never);
  registry.registerMetric(
    requests.histogramMetric('hellwall_request_duration_seconds', 'Time from a request being read to its answer being ready, by command.') as never,
  );
  const open = new Gauge({ name: 'hellwall_connections_open', help: 'Open client connections (TLS established).', registers });
  let openNow = 0;
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
  const housekept = new Counter({
    name: 'hellwall_housekeeping_deleted_total',
    help: 'Expired rows deleted by housekeeping, by table.',
    labelNames: ['table'] as const,
    registers,
  });
  const audited = new Counter({
    name: 'hellwall_audit_events_total',
    help: 'Audit events written to the audit table; dropped because the database refused them (alert on these); coalesced (repeats of one refusal within a minute, counted in the next row for it); suppressed (refusals beyond the budget of 1,000 a minute, counted in an audit.suppressed row).',
    labelNames: ['outcome'] as const,
    registers,
  });
  const activeSessions = opts.activeSessions;
  if (activeSessions) {
    let counting: Promise<number> | undefined;
    new Gauge({
      name: 'hellwall_sessions_active',
      help: 'Active sessions: not revoked, account enabled, and a current token or one still renewable (inside the idle and absolute limits).',
      registers,
      // One in every process would be counted once per worker, then summed: the primary reports it.
      aggregator: 'first',
      async collect() {
        counting ??= activeSessions().finally(() => {
          counting = undefined;
        });
        this.set(await counting);
      },
    });
  }

  return {
    registry,
    contentType: registry.contentType,
    render: () => registry.metrics(),
    connectionsOpen: () => openNow,
    request(command, outcome, seconds) {
      requests.record(command, outcome, seconds);
    },
    connectionOpened() {
      openNow++;
      open.inc();
      accepted.inc();
    },
    connectionClosed() {
      openNow--;
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
    housekeeping(table, rows) {
      housekept.labels(table).inc(rows);
    },
    audit(outcome, events) {
      audited.labels(outcome).inc(events);
    },
  };
}

// Token checks take microseconds, logins tens to hundreds of milliseconds (scrypt).
const LATENCY_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

interface CommandStats {
  readonly outcomes: Map<string, number>;
  /** Per bucket (not cumulative); the last slot is +Inf. */
  readonly buckets: Float64Array;
  sum: number;
  count: number;
}

interface Sample {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

/** Request counts and a latency histogram per command, kept as plain numbers. */
export class RequestStats {
  readonly #bounds: readonly number[];
  readonly #commands = new Map<string, CommandStats>();

  constructor(bounds: readonly number[]) {
    this.#bounds = bounds;
  }

  record(command: string, outcome: string, seconds: number): void {
    let c = this.#commands.get(command);
    if (!c) {
      c = { outcomes: new Map(), buckets: new Float64Array(this.#bounds.length + 1), sum: 0, count: 0 };
      this.#commands.set(command, c);
    }
    c.outcomes.set(outcome, (c.outcomes.get(outcome) ?? 0) + 1);
    let i = 0;
    while (i < this.#bounds.length && seconds > this.#bounds[i]!) i++;
    c.buckets[i]!++;
    c.sum += seconds;
    c.count++;
  }

  /** A prom-client custom metric (what `registry.registerMetric` takes) for the request counts. */
  counterMetric(name: string, help: string) {
    const get = () => {
      const values: Sample[] = [];
      for (const [command, c] of this.#commands) for (const [outcome, n] of c.outcomes) values.push({ value: n, labels: { command, outcome } });
      return { name, help, type: 'counter', values, aggregator: 'sum' };
    };
    return { name, help, type: 'counter', get, reset: () => this.#commands.clear(), aggregator: 'sum' };
  }

  /** A prom-client custom metric for the latency histogram (cumulative buckets, as exposed). */
  histogramMetric(name: string, help: string) {
    const get = () => {
      const values: Sample[] = [];
      for (const [command, c] of this.#commands) {
        let cumulative = 0;
        this.#bounds.forEach((le, i) => {
          cumulative += c.buckets[i]!;
          values.push({ metricName: `${name}_bucket`, value: cumulative, labels: { le, command } });
        });
        values.push({ metricName: `${name}_bucket`, value: c.count, labels: { le: '+Inf', command } });
        values.push({ metricName: `${name}_sum`, value: c.sum, labels: { command } });
        values.push({ metricName: `${name}_count`, value: c.count, labels: { command } });
      }
      return { name, help, type: 'histogram', values, aggregator: 'sum' };
    };
    return { name, help, type: 'histogram', get, reset: () => this.#commands.clear(), aggregator: 'sum' };
  }
}
