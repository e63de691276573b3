import type { Config } from '../config.js';
import type { Logger } from '../deps.js';
import type { AccountService } from '../auth/account-service.js';
import type { AdminService } from '../auth/admin-service.js';
import type { PasscodeService } from '../auth/passcode-service.js';
import type { SessionService } from '../auth/session-service.js';
import type { TokenService } from '../auth/token-service.js';
import type { Protocol } from '../protocol/registry.js';

/** What a handler may use: the services, and facts about the connection the request came on. */
export interface Services {
  readonly config: Config;
  readonly protocol: Protocol;
  readonly passcodes: PasscodeService;
  readonly tokens: TokenService;
  readonly sessions: SessionService;
  readonly admin: AdminService;
  readonly account: AccountService;
}

export interface RequestContext {
  /** The peer address the server sees, normalized [P-3.4]. */
  readonly ip: string;
  /** The connection's child logger. */
  readonly log: Logger;
  /** Requests refused on this connection so far; bounds how many are logged one by one. */
  refusals: number;
}

/** A response body without `id` and `code`; the dispatcher adds those [P-2.4]. */
export type ResponseBody = { status: string } & Record<string, unknown>;

/** One command's handler: gets a request already validated against its schema. */
export type Handler<Req> = (services: Services, request: Req, ctx: RequestContext) => ResponseBody | Promise<ResponseBody>;
