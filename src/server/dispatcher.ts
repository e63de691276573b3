import type { ValidateFunction } from 'ajv';
import { HANDLERS } from '../handlers/index.js';
import type { Handler, RequestContext, ResponseBody, Services } from '../handlers/context.js';
import { ProtocolError, toErrorResponse, type ErrorCode } from '../protocol/errors.js';
import { NO_METRICS, type Metrics } from '../ops/metrics.js';
import { commandCode, MAX_COMMAND_CODE, requestId } from '../protocol/envelope.js';
import { describeSchemaError, type Protocol } from '../protocol/registry.js';
import { quickValidator, type QuickValidator } from '../protocol/quick-validators.js';
import { ServiceError, StoreFailure, type ServiceErrorKind } from '../errors.js';

export type Response = Record<string, unknown>;

/** Refused requests per connection logged at info; the rest at debug, with a total at close. */
export const REFUSALS_LOGGED = 20;
/** Refused requests logged at info a minute across every connection; the rest at debug, counted. */
export const REFUSAL_LINES_PER_MINUTE = 1000;

/** What a connection hands each parsed request to. Sync results keep the hot path promise-free. */
export type DispatchFn = (message: Record<string, unknown>, ctx: RequestContext) => Response | Promise<Response>;

interface Route {
  readonly name: string;
  readonly validate: ValidateFunction;
  /** Passed: the schema would pass it too, and is not run (one validation per request). */
  readonly quick: QuickValidator | undefined;
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
  const budget = { start: monotonic(), used: 0, over: 0 };
  for (const [code, command] of protocol.commands) {
    const handler = handlers[command.name];
    if (!handler) throw new Error(`protocol command ${command.name} (code ${code}) has no handler`);
    const quick = quickValidator(command.name, protocol.schemas.get(command.request), protocol.schemas.get('common.json'));
    routes.set(code, { name: command.name, validate: command.validateRequest, quick, handler });
  }

  return function dispatch(message, ctx) {
    // [P-2.4] Echo the id and the code only when they are ones we could have accepted: exactly the
    // schemas' definitions, so no answer carries a value a generated client type cannot hold.
    const id = requestId(message.id);
    const code = commandCode(message.code);
    if (code === undefined) {
      const raw = message.code;
      const why =
        raw === undefined
          ? '(request) is missing required field "code"'
          : Number.isInteger(raw)
            ? `/code must be from 0 to ${MAX_COMMAND_CODE}`
            : '/code must be integer';
      return logged(ctx, toErrorResponse('E_SCHEMA', why, id), undefined, monotonic());
    }
    const route = routes.get(code);
    if (!route) {
      // [P-2.2] Unknown commands are a per-request error: a newer client may talk to an older server.
      return logged(ctx, toErrorResponse('E_UNKNOWN_COMMAND', `unknown command code ${code}`, id, code), undefined, monotonic());
    }
    const started = monotonic();
    if (!(route.quick !== undefined && route.quick(message, id)) && !route.validate(message)) {
      // [P-2.3] Schema violations keep the connection open.
      return logged(ctx, toErrorResponse('E_SCHEMA', describeSchemaError(route.validate.errors), id, code), route.name, started);
    }
    let result: ResponseBody | Promise<ResponseBody>;
    try {
      result = route.handler(services, message as never, ctx);
    } catch (err) {
      return logged(ctx, errorFor(err, ctx, id, code), route.name, started);
    }
    // Closures only for an answer that is not ready: the synchronous path allocates none.
    if (result instanceof Promise) {
      return result.then(
        (body) => logged(ctx, withEnvelope(body, id, code), route.name, started),
        (err: unknown) => logged(ctx, errorFor(err, ctx, id, code), route.name, started),
      );
    }
    return logged(ctx, withEnvelope(result, id, code), route.name, started);
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
      // And past a global budget a minute, whatever the number of connections: many connections
      // each sending a few bad requests must not fill the disk either.
      const now = monotonic();
      if (now - budget.start >= 60_000) {
        if (budget.over > 0) ctx.log.warn({ suppressed: budget.over }, 'refused requests logged at debug only: over the budget of the minute');
        budget.start = now;
        budget.used = 0;
        budget.over = 0;
      }
      const withinBudget = budget.used < REFUSAL_LINES_PER_MINUTE ? (budget.used++, true) : (budget.over++, false);
      const level = ++ctx.refusals <= REFUSALS_LOGGED && withinBudget ? 'info' : 'debug';
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

/** Each kind of service refusal as the wire answers it [P-2.5]: the one place that knows both. */
const WIRE_CODE: Readonly<Record<ServiceErrorKind, ErrorCode>> = {
  'auth-failed': 'E_AUTH_FAILED',
  unauthenticated: 'E_UNAUTHENTICATED',
  forbidden: 'E_FORBIDDEN',
  'not-found': 'E_NOT_FOUND',
  conflict: 'E_CONFLICT',
  invalid: 'E_INVALID',
  'rate-limited': 'E_RATE_LIMITED',
  busy: 'E_BUSY',
  'clock-skew': 'E_CLOCK_SKEW',
  'face-image': 'E_FACE_IMAGE',
  'face-none': 'E_FACE_NONE',
  'face-several': 'E_FACE_SEVERAL',
  'face-small': 'E_FACE_TOO_SMALL',
  'face-unavailable': 'E_FACE_UNAVAILABLE',
};

/**
 * Service refusals and protocol errors reach the client as themselves; the store's failures as
 * E_BUSY (nothing was changed that the client is not told of, and retrying is right); anything
 * else is an internal fault [P-2.5].
 */
function errorFor(err: unknown, ctx: RequestContext, id: string | undefined, code: number): Response {
  if (err instanceof ServiceError) {
    return toErrorResponse(WIRE_CODE[err.kind], err.message, id, code, err.retryAfterSeconds === undefined ? undefined : { retryAfterSeconds: err.retryAfterSeconds });
  }
  if (err instanceof ProtocolError) return toErrorResponse(err.code, err.message, id, code, err.details);
  if (err instanceof StoreFailure) {
    // Busy: another process holds the write lock; unavailable: the database cannot be reached.
    // Either way nothing was changed, retrying is right, and the answer is never a guess.
    if (err.failure === 'busy') ctx.log.warn({ err: err.message }, 'database busy');
    else ctx.log.error({ err: err.message }, 'database unavailable');
    return toErrorResponse('E_BUSY', 'server is busy; retry later', id, code);
  }
  ctx.log.error({ err }, 'handler failed');
  return toErrorResponse('E_INTERNAL', 'internal error', id, code);
}
