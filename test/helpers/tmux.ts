import { spawnSync } from 'node:child_process';

// A real pseudo-terminal driven as a person would: tmux runs the command in a detached 120x40
// window on a tmux server of its own (its own socket: nobody else's sessions are touched, and the
// environment is exactly the one given, not a running tmux server's), keys go in with send-keys
// and the screen comes back with capture-pane.

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface Terminal {
  /** Types text literally (no key names). */
  type(text: string): void;
  /** Presses keys by tmux name: Enter, Down, C-c, C-d. */
  press(...keys: string[]): void;
  /** The screen and its scrollback, as text. */
  screen(): string;
  /** Resolves with the screen once `pattern` is on it; rejects with the screen after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

const TMUX = '/usr/bin/tmux';

/** Starts `argv` under tmux with exactly `env`; when it exits, the window shows `[exit N]`. */
export function startTerminal(t: Teardown, argv: string[], env: Record<string, string | undefined>): Terminal {
  const socket = `hellwall-test-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  const vars = Object.entries(env)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => quote(`${k}=${v}`));
  // The shell keeps the window open after the command, so its exit code can be read.
  const command = `env -i ${vars.join(' ')} ${argv.map(quote).join(' ')}; echo "[exit $?]"; sleep 600`;
  const tmux = (...args: string[]): string => {
    const r = spawnSync(TMUX, ['-L', socket, '-f', '/dev/null', ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tmux ${args[0]}: ${r.stderr}`);
    return r.stdout;
  };
  tmux('new-session', '-d', '-s', 'test', '-x', '120', '-y', '40', command);
  t.teardown(() => {
    spawnSync(TMUX, ['-L', socket, 'kill-server']);
  });
  const term: Terminal = {
    type: (text) => void tmux('send-keys', '-t', 'test', '-l', text),
    press: (...keys) => void tmux('send-keys', '-t', 'test', ...keys),
    screen: () => tmux('capture-pane', '-p', '-J', '-S', '-', '-t', 'test'),
    async waitFor(pattern, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const screen = term.screen();
        if (pattern.test(screen)) return screen;
        if (Date.now() > deadline) throw new Error(`not on the screen within ${timeoutMs} ms: ${pattern}\n--- screen ---\n${screen}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
  return term;
}
