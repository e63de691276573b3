import { loadProtocol, type Protocol } from '../../src/protocol/registry.js';

let compiledProtocol: Protocol | undefined;
/**
 * The protocol compiled once per test process and handed to every app it builds (AppDeps.protocol):
 * compiled validators hold no per-app state, and compiling them for each of a file's dozens of
 * harnesses (and main() calls) was the largest part of many test files' CPU time.
 */
export function sharedProtocol(): Protocol {
  return (compiledProtocol ??= loadProtocol());
}
