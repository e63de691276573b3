import type { HellwallClient } from './client.js';
import type { CommandName, Commands, ErrorResponse, TokenCheckRenew, TokenCheckResponse } from '../protocol/messages.gen.js';

/** Where the caller's token came from: only a stored one can follow a renewal by itself. */
export type TokenSource = 'option' | 'env' | 'file';

export interface Credentials {
  readonly token: string;
  readonly mac: string;
  readonly source: TokenSource;
}

/** Commands whose request carries the caller's `token` and `mac`. */
export type AuthenticatedCommand = {
  [K in CommandName]: Commands[K][0] extends { token: string; mac: string } ? K : never;
}[CommandName];

type Fields<K extends CommandName> = Omit<Commands[K][0], 'code' | 'id' | 'token' | 'mac'>;
type Result<K extends CommandName> = Commands[K][1] | ErrorResponse;

/**
 * Keeps a client's token current. A `renew` answer rotates the token [P-4.5]: `onRenew` must store
 * the new one before anything else happens (the old one is treated as stolen after the grace), so
 * it is awaited before the answer is handed on, and later requests carry the new token.
 */
export class AuthenticatedClient {
  #token: string;
  readonly mac: string;
  readonly source: TokenSource;

  constructor(
    readonly client: HellwallClient,
    credentials: Credentials,
    private readonly onRenew: (renewed: TokenCheckRenew, mac: string) => Promise<void> | void,
  ) {
    this.#token = credentials.token;
    this.mac = credentials.mac;
    this.source = credentials.source;
  }

  get token(): string {
    return this.#token;
  }

  /** token.check for `request`; a renewal is stored (onRenew) before this resolves. */
  async check(request: string, data?: unknown): Promise<TokenCheckResponse | ErrorResponse> {
    const res = await this.client.command('token.check', { token: this.#token, mac: this.mac, request, ...(data !== undefined && { data }) });
    if (res.status === 'renew') {
      await this.onRenew(res, this.mac);
      this.#token = res.token;
    }
    return res;
  }

  /**
   * An authenticated command with the caller's token and MAC. Only token.check renews an expired
   * token; the other commands answer E_UNAUTHENTICATED [P-3.6]. For a stored token that answer is
   * met with one renewing check (for the command's own name, which the policy decides on like any
   * request) and, if it renewed, the command once more: the operator never sees an expiry the
   * server would have renewed. A token given by hand is not renewed behind the operator's back:
   * the new one would be lost with the process.
   */
  async call<K extends AuthenticatedCommand>(name: K, fields: Fields<K>): Promise<Result<K>> {
    const send = (): Promise<Result<K>> =>
      this.client.command(name, { ...fields, token: this.#token, mac: this.mac } as unknown as Omit<Commands[K][0], 'code' | 'id'>);
    const first = await send();
    if (this.source !== 'file' || first.status !== 'error' || (first as ErrorResponse).error !== 'E_UNAUTHENTICATED') return first;
    const check = await this.check(name);
    return check.status === 'renew' ? send() : first;
  }
}
