import type { Logger } from 'pino';

/** Milliseconds since the Unix epoch. Injected so tests can move time without sleeping. */
export type Clock = () => number;

/** Cryptographically secure random bytes. Injected so tests can make outputs predictable. */
export type RandomBytes = (size: number) => Buffer;

export type { Logger };
