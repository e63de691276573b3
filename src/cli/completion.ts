import { allOptions, isGroup, type Command, type Entry } from './command.js';
import { UsageError } from './errors.js';

// `hellwall completion bash|zsh`: a completion script made from the command declarations, so it
// never lists a command or option that does not exist. zsh runs the bash function through
// bashcompinit (shipped with zsh), so the two cannot drift apart.

const words = (list: Iterable<string>): string => [...list].join(' ');
const optionWords = (cmd: Command): string => words(Object.keys(allOptions(cmd)).map((o) => `--${o}`));

/** The bash function; `entries` are the top-level commands and groups. */
export function bashCompletion(entries: readonly Entry[]): string {
  const commands = entries.flatMap((e) => (isGroup(e) ? e.commands : [e]));
  const options = commands.flatMap((c) => Object.entries(allOptions(c)));
  const fileOptions = new Set(options.filter(([, d]) => d.file).map(([n]) => `--${n}`));
  const choices = new Map(options.filter(([, d]) => d.choices).map(([n, d]) => [`--${n}`, words(d.choices!)]));
  const groupCases = entries.map((e) => {
    if (!isGroup(e)) return `    ${e.name}) opts="${optionWords(e)}" ;;`;
    const subs = e.commands.map((c) => `        ${c.name}) opts="${optionWords(c)}" ;;`).join('\n');
    return [
      `    ${e.name})`,
      `      if [ "$COMP_CWORD" -eq 2 ]; then COMPREPLY=($(compgen -W "${words(e.commands.map((c) => c.name))} --help" -- "$cur")); return; fi`,
      '      case "${COMP_WORDS[2]}" in',
      subs,
      '      esac ;;',
    ].join('\n');
  });
  return [
    '# hellwall completion for bash: eval "$(hellwall completion bash)" (in ~/.bashrc)',
    '_hellwall() {',
    '  local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" opts=""',
    '  if [ "$COMP_CWORD" -eq 1 ]; then',
    `    COMPREPLY=($(compgen -W "${words(entries.map((e) => e.name))} help --help --version" -- "$cur")); return`,
    '  fi',
    '  case "$prev" in',
    ...(fileOptions.size > 0 ? [`    ${[...fileOptions].join('|')}) COMPREPLY=($(compgen -f -- "$cur")); return ;;`] : []),
    ...[...choices].map(([o, w]) => `    ${o}) COMPREPLY=($(compgen -W "${w}" -- "$cur")); return ;;`),
    '  esac',
    '  case "${COMP_WORDS[1]}" in',
    ...groupCases,
    '  esac',
    '  COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
    '}',
    'complete -F _hellwall hellwall',
    '',
  ].join('\n');
}

export function zshCompletion(entries: readonly Entry[]): string {
  return [
    '# hellwall completion for zsh: eval "$(hellwall completion zsh)" (in ~/.zshrc, after compinit)',
    'autoload -U +X bashcompinit && bashcompinit',
    bashCompletion(entries).split('\n').slice(1).join('\n'),
  ].join('\n');
}

/** The command; `entries` is read when it runs (it lists itself too). */
export function completionCommand(entries: () => readonly Entry[]): Command {
  return {
    name: 'completion',
    summary: 'print a shell completion script: bash or zsh',
    args: 'SHELL',
    options: {},
    details: 'Load it from your shell start-up file; it completes commands, subcommands, options,\nchoices (--outcome) and file names (--data-dir, --ca).',
    examples: ['echo \'eval "$(hellwall completion bash)"\' >> ~/.bashrc', 'echo \'eval "$(hellwall completion zsh)"\' >> ~/.zshrc'],
    run: async (ctx, args) => {
      const shell = args.positionals[0];
      if (shell === 'bash') ctx.out(bashCompletion(entries()));
      else if (shell === 'zsh') ctx.out(zshCompletion(entries()));
      else throw new UsageError(`completion: unknown shell ${JSON.stringify(shell)} (bash or zsh)`);
      return 0;
    },
  };
}
