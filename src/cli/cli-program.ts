import { Command, CommanderError } from 'commander';
import { EXIT } from '../core/asp-error.js';
import { printableLines } from '../core/printable.js';
import { ASP_VERSION } from '../core/version.js';

type Register = (program: Command) => void;

/**
 * The commands, each loaded only when it runs: `asp run` must not pay for the Langfuse SDK, the reaper or the
 * batch machinery at start-up. Help and unknown commands load them all, so commander can list and suggest.
 */
const COMMANDS: Record<string, () => Promise<Register>> = {
  run: async () => (await import('./run-command.js')).registerRunCommand,
  batch: async () => (await import('./batch-command.js')).registerBatchCommand,
  approve: async () => (await import('./approve-command.js')).registerApproveCommand,
  traces: async () => (await import('./traces-command.js')).registerTracesCommand,
  reap: async () => (await import('./reap-command.js')).registerReapCommand,
  workspaces: async () => (await import('./workspaces-command.js')).registerWorkspacesCommand,
  doctor: async () => (await import('./doctor-command.js')).registerDoctorCommand,
  image: async () => (await import('./image-command.js')).registerImageCommand,
  probe: async () => (await import('./probe-command.js')).registerProbeCommand,
  pool: async () => (await import('./pool-command.js')).registerPoolCommand,
};

const program = new Command('asp')
  .description('run coding-agent tasks against any git repository, each in its own locked-down container')
  .version(ASP_VERSION)
  .showSuggestionAfterError()
  .exitOverride()
  .configureOutput({
    // commander's own errors are usage errors: one line, exit 2.
    outputError: (text, write) => write(`asp: ${printableLines(text.replace(/^error: /, 'error: ').trim())} — see asp --help\n`),
  });

/** asp itself, on `argv` (node, the entry, then asp's arguments): as `asp` runs, and as a standby runs its client's. */
export async function runCli(argv: string[]): Promise<void> {
  try {
    const named = argv[2];
    const chosen = named && Object.hasOwn(COMMANDS, named) ? COMMANDS[named] : undefined;
    // `asp --version` needs no command at all; help and anything unknown need them all (to list and to suggest).
    const versionOnly = argv.length === 3 && (named === '--version' || named === '-V');
    for (const load of chosen ? [chosen] : versionOnly ? [] : Object.values(COMMANDS)) (await load())(program);
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      const benign = error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help';
      process.exitCode = benign ? EXIT.ok : EXIT.badInput;
    } else {
      process.stderr.write(`asp: error: ${printableLines(error instanceof Error ? error.message : String(error))}\n`);
      process.exitCode = EXIT.infrastructure;
    }
  }
}
