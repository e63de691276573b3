// The 4Auth clock-skew rule: a request that carries the client's UTC time (`clientTime`,
// milliseconds since the Unix epoch, protocol/schemas/common.json) is refused when that time is
// further from the server's clock than `auth.maxClockSkewSeconds`, so a request captured and
// replayed from another time, or sent by a client whose clock is wrong (and whose TOTP codes would
// be wrong too), fails with a clear message instead of as a wrong factor.
//
// The server trusts its own clock (the injected `clock`) and makes no outbound NTP call: keep the
// host NTP-disciplined (README "Clock skew"). A server clock that drifts refuses every client.
//
// API (for the services that take `clientTime`: passcode.auth here; the recovery commands):
//   checkClockSkew(clientTime, clock(), config.auth)   // throws ServiceError('clock-skew', …)
//   clockSkewSeconds(clientTime, now)                  // signed seconds, client minus server
//
// `clientTime` is optional on the wire ([P-5.2]: a 1.4 client must keep working); with
// `auth.requireClientTime` the server refuses a request without it, once every client sends it.

import type { Config } from '../config.js';
import { ServiceError } from '../errors.js';

/** The part of the configuration this rule reads. */
export type ClockSkewConfig = Pick<Config['auth'], 'maxClockSkewSeconds' | 'requireClientTime'>;

/** The client's time minus the server's, in whole seconds away from zero (positive: client ahead). */
export function clockSkewSeconds(clientTime: number, now: number): number {
  const ms = clientTime - now;
  return Math.sign(ms) * Math.ceil(Math.abs(ms) / 1000);
}

/**
 * Throws ServiceError('clock-skew') when `clientTime` is more than `maxClockSkewSeconds` from `now`,
 * or is absent while `requireClientTime` is on. The message names the skew in seconds and which
 * side is ahead; it tells nothing about the account, so it may precede every other check.
 */
export function checkClockSkew(clientTime: number | undefined, now: number, config: ClockSkewConfig): void {
  if (clientTime === undefined) {
    if (config.requireClientTime) {
      throw new ServiceError('clock-skew', 'this server requires clientTime (the client\'s UTC time in milliseconds since the epoch); upgrade the client');
    }
    return;
  }
  const limitMs = config.maxClockSkewSeconds * 1000;
  if (Math.abs(clientTime - now) <= limitMs) return;
  const skew = clockSkewSeconds(clientTime, now);
  const side = skew > 0 ? 'ahead of' : 'behind';
  throw new ServiceError(
    'clock-skew',
    `client clock is ${Math.abs(skew)} s ${side} the server's (at most ${config.maxClockSkewSeconds} s allowed): set the client's clock from NTP and retry`,
  );
}
