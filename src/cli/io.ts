import type { Readable } from 'node:stream';
import type { Protocol } from '../protocol/registry.js';

/** Where a command's text goes: a terminal or pipe in a real process, buffers in a test. */
export interface TextSink {
  write(text: string): unknown;
  /** True on a terminal: colour and the human log format are for terminals only. */
  readonly isTTY?: boolean;
}

/** What the terminal gives a command: a password prompt puts a TTY stdin in raw mode. */
export type TextSource = Readable & { readonly isTTY?: boolean; setRawMode?(mode: boolean): unknown };

/**
 * The process's streams, injected: `main()` never touches process.stdout/stderr/stdin itself, so a
 * test runs it in-process and reads what it wrote.
 */
export interface CliIo {
  readonly stdout: TextSink;
  readonly stderr: TextSink;
  readonly stdin: TextSource;
  /**
   * The compiled protocol, when the caller has one (in-process tests run main() hundreds of times
   * and share one); absent: protocol/ compiled by the command that needs it.
   */
  readonly protocol?: Protocol;
}

/** The real streams, for src/cli.ts. */
export function processIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin };
}
