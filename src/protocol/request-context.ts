import type { Logger } from '../deps.js';

/**
 * Facts about the connection a request came on. The connection (transport) makes one per socket;
 * the dispatcher and the handlers read it. It lives here, below all three, so that none of them
 * imports a layer above its own.
 */
export interface RequestContext {
  /** The peer address the server sees, normalized [P-3.4]. */
  readonly ip: string;
  /** The connection's child logger. */
  readonly log: Logger;
  /** Requests refused on this connection so far; bounds how many are logged one by one. */
  refusals: number;
}
