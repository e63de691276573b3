import type { ValidateFunction } from 'ajv';
import { HANDLERS } from '../handlers/index.js';
import type { Handler, RequestContext, ResponseBody, Services } from '../handlers/context.js';
import { ProtocolError, toErrorResponse } from '../protocol/errors.js';
import { NO_METRICS, type Metrics } from '../ops/metrics.js';
import { describeSchemaError, type Protocol } from '../protocol/registry.js';
import { StoreBusyError } from '../store/store.js';

export type Response = Record<string, unknown>;

/** Refused requests per connection logged at info; the rest at debug, with a total at close. */
export const REFUSALS_LOGGED = 20;

/** What a connection hands each parsed request to. Sync results keep the hot path promise-free. */
export type DispatchFn = (message: Record<string, unknown>, ctx: RequestContext) => Response | Promise<Response>;

interface Route {
  readonly name: string;
  readonly validate: ValidateFunction;
  readonly handler: Handler<never>;
}

/**
 * Parse → validate → route. Validators come compiled from the protocol; the table is built once
 * here, and a command in the index without a handler stops start-up rather than failing later.
 */
export function createDispatcher(
  services: Services,
  protocol: Protocol,
  opts: { handlers?: Record<string, Handler<never>>; metrics?: Metrics; monotonic?: () => number } = {},
): DispatchFn {
  const handlers = opts.handlers ?? HANDLERS;
  const metrics = opts.metrics ?? NO_METRICS;
  // Latency is measured on a monotonic clock in milliseconds; the injected wall clock may be fake.
  const monotonic = opts.monotonic ?? performance.now.bind(performance);
  const routes = new Map<number, Route>();
  for (const [code, command] of protocol.commands) {
    const handler = handlers[command.name];
    if (!handler) throw new Error(`protocol command ${command.name} (code ${code}) has no handler`);
    routes.set(code, { name: command.name, validate: command.validateRequest, handler });
  }

  return function dispatch(message, ctx) {
    // [P-2.4] Echo the id only when it is one we could have accepted.
    const rawId = message.id;
    // The schema counts characters (code points), not UTF-16 units.
    const id = typeof rawId === 'string' && rawId.length > 0 && rawId.length <= 128 && [...rawId].length <= 64 ? rawId : undefined;
    const code = message.code;
    if (typeof code !== 'number' || !Number.isInteger(code)) {
      const why = code === undefined ? '(request) is missing required field "code"' : '/code must be integer';
      return logged(ctx, toErrorResponse('E_SCHEMA', why, id), undefined, monotonic());
    }
    const route = routes.get(code);
    if (!route) {
      // [P-2.2] Unknown commands are a per-request error: a newer client may talk to an older server.
      return logged(ctx, toErrorResponse('E_UNKNOWN_COMMAND', `unknown command code ${code}`, id, code), undefined, monotonic());
    }
    const started = monotonic();
    if (!route.validate(message)) {
      // [P-2.3] Schema violations keep the connection open.
      return logged(ctx, toErrorResponse('E_SCHEMA', describeSchemaError(route.validate.errors), id, code), route.name, started);
    }
    const finish = (body: ResponseBody): Response => logged(ctx, withEnvelope(body, id, code), route.name, started);
    const fail = (err: unknown): Response => logged(ctx, errorFor(err, ctx, id, code), route.name, started);
    try {
      const result = route.handler(services, message as never, ctx);
      return result instanceof Promise ? result.then(finish, fail) : finish(result);
    } catch (err) {
      return fail(err);
    }
  };

  function logged(ctx: RequestContext, response: Response, command: string | undefined, started: number): Response {
    const ms = monotonic() - started;
    const outcome = response.status === 'error' ? (response.error as string) : (response.status as string);
    metrics.request(command ?? 'unknown', outcome, ms / 1000);
    if (outcome === 'E_BUSY') metrics.throttled('busy');
    else if (outcome === 'E_RATE_LIMITED') metrics.throttled('rate_limit');
    // Refused requests are worth an operator's attention; successes only when debugging. Past a
    // few per connection they go to debug (the connection logs its total when it closes): one read
    // of tiny bad frames must not turn into megabytes of log.
    if (response.status === 'error') {
      const level = ++ctx.refusals <= REFUSALS_LOGGED ? 'info' : 'debug';
      ctx.log[level]({ command, id: response.id, error: response.error, reason: response.message }, 'request refused');
    } else if (ctx.log.isLevelEnabled('debug')) {
      ctx.log.debug({ command, id: response.id, status: response.status, ms }, 'request');
    }
    return response;
  }
}

function withEnvelope(body: ResponseBody, id: string | undefined, code: number): Response {
  return id === undefined ? { code, ...body } : { id, code, ...body };
}

/** Only ProtocolErrors reach the client as themselves; anything else is an internal fault [P-2.5]. */
function errorFor(err: unknown, ctx: RequestContext, id: string | undefined, code: number): Response {
  if (err instanceof ProtocolError) return toErrorResponse(err.code, err.message, id, code, err.details);
  if (err instanceof StoreBusyError) {
    // Another process holds the write lock: nothing was changed, and retrying is the right move.
    ctx.log.warn({ err: (err as Error).message }, 'database busy');
    return toErrorResponse('E_BUSY', 'server is busy; retry later', id, code);
  }
  ctx.log.error({ err }, 'handler failed');
  return toErrorResponse('E_INTERNAL', 'internal error', id, code);
}
