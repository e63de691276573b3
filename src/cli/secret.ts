import { CancelledError } from './errors.js';
import type { CliIo } from './io.js';

/**
 * A secret (a password): from $HELLWALL_PASSWORD, else the first line of a piped stdin, else typed
 * at the terminal without echo.
 */
export async function readSecret(env: NodeJS.ProcessEnv, io: CliIo, prompt: string): Promise<string> {
  const fromEnv = env.HELLWALL_PASSWORD;
  if (fromEnv !== undefined) return fromEnv;
  const { stdin } = io;
  if (!stdin.isTTY || !stdin.setRawMode) {
    // Scripts may pipe the password: the first line of stdin.
    const chunks: Buffer[] = [];
    for await (const chunk of stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
    return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
  }
  // Echo goes off before the prompt appears: keys typed as soon as it shows must not be echoed.
  stdin.setRawMode(true);
  io.stderr.write(prompt);
  stdin.resume();
  let value = '';
  // 0: text; 1: after ESC; 2: inside a CSI sequence (arrow keys and the like send ESC [ ... final).
  let escape = 0;
  try {
    for await (const chunk of stdin) {
      for (const ch of (chunk as Buffer).toString('utf8')) {
        if (escape === 1) {
          escape = ch === '[' ? 2 : 0;
          continue;
        }
        if (escape === 2) {
          if (ch >= '@' && ch <= '~') escape = 0;
          continue;
        }
        if (ch === '\u001b') {
          escape = 1;
          continue;
        }
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return value; // Enter, or Ctrl-D
        if (ch === '\u0003') throw new CancelledError('cancelled'); // Ctrl-C
        if (ch === '\u007f' || ch === '\b') value = [...value].slice(0, -1).join('');
        else if (ch >= ' ') value += ch; // other control characters (and escape sequences) are not part of a password
      }
    }
    return value;
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    io.stderr.write('\n');
  }
}
