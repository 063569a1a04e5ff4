#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { EXIT } from '../asp-error.js';
import { registerDoctorCommand } from './doctor-command.js';
import { registerImageCommand } from './image-command.js';
import { registerRunCommand } from './run-command.js';

const program = new Command('asp')
  .description('run coding-agent tasks against any git repository, each in its own locked-down container')
  .version('0.1.0')
  .showSuggestionAfterError()
  .exitOverride()
  .configureOutput({
    // commander's own errors are usage errors: one line, exit 2.
    outputError: (text, write) => write(`asp: ${text.replace(/^error: /, 'error: ').trim()} — see asp --help\n`),
  });

registerRunCommand(program);
registerDoctorCommand(program);
registerImageCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    const benign = error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help';
    process.exitCode = benign ? EXIT.ok : EXIT.badInput;
  } else {
    process.stderr.write(`asp: error: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = EXIT.infrastructure;
  }
}
