import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../deps.js';
import type { MetricsExposition } from './metrics.js';

/** One readiness check: a name and a function that throws (or returns a reason) when not ready. */
export interface ReadinessCheck {
  readonly name: string;
  check(): string | null | Promise<string | null>;
}

export interface OpsServerOptions {
  readonly metrics: MetricsExposition;
  readonly checks: readonly ReadinessCheck[];
  readonly log: Logger;
  /** More fields for the `/readyz` body (with workers: each worker's pid and open connections). */
  readonly details?: () => Promise<Record<string, unknown>>;
}

/**
 * The operations listener, separate from the TLS port so that it can stay on loopback or an
 * internal network while clients reach the service:
 * - `/healthz`: the process is alive and its event loop turns (for restarts);
 * - `/readyz`: every readiness check passes (for load balancers; 503 with the failing checks);
 * - `/metrics`: Prometheus exposition.
 * Plain HTTP on purpose: it carries no secret, and scrapers rarely speak TLS to sidecars.
 */
export class OpsServer {
  readonly #server: http.Server;
  readonly #opts: OpsServerOptions;

  constructor(opts: OpsServerOptions) {
    this.#opts = opts;
    this.#server = http.createServer((req, res) => void this.#handle(req, res));
    // Scrapers keep connections alive; they must not hold up shutdown.
    this.#server.keepAliveTimeout = 5_000;
    this.#server.headersTimeout = 10_000;
    this.#server.requestTimeout = 10_000;
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'method not allowed\n', { allow: 'GET, HEAD' });
    try {
      if (url === '/healthz') return send(res, 200, 'text/plain', 'ok\n');
      if (url === '/readyz') {
        const failing: Record<string, string> = {};
        for (const c of this.#opts.checks) {
          let reason: string | null;
          try {
            reason = await c.check();
          } catch (err) {
            reason = (err as Error).message;
          }
          if (reason !== null) failing[c.name] = reason;
        }
        const ready = Object.keys(failing).length === 0;
        if (!ready) this.#opts.log.warn({ failing }, 'not ready');
        const details = this.#opts.details ? await this.#opts.details() : {};
        return send(res, ready ? 200 : 503, 'application/json', `${JSON.stringify({ ready, failing, ...details })}\n`);
      }
      if (url === '/metrics') {
        return send(res, 200, this.#opts.metrics.contentType, await this.#opts.metrics.render());
      }
      return send(res, 404, 'text/plain', 'not found\n');
    } catch (err) {
      this.#opts.log.error({ err, url }, 'ops request failed');
      return send(res, 500, 'text/plain', 'internal error\n');
    }
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject);
        resolve(this.#server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}

function send(res: http.ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
