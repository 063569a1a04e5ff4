import type { Command } from 'commander';
import { EXIT } from '../asp-error.js';
import { approveTask } from '../delivery/approve-task.js';
import { resolveTraceMode } from '../tracing/trace-mode.js';
import { makeContext, reportFailure } from './cli-context.js';

export function registerApproveCommand(program: Command): void {
  program
    .command('approve')
    .description('decide on a task waiting at the HITL gate: push and open its PR, or discard it with --deny')
    .argument('<task>', 'the task id')
    .option('--deny', 'reject the changes: nothing is pushed, the clone is removed')
    .option('--comment <text>', 'why; recorded in the trace with who decided and when')
    .option('--trace <mode>', 'langfuse | json | off, as for asp run')
    .option('--json', 'print the result as JSON')
    .action(async (taskId: string, flags: { deny?: boolean; comment?: string; trace?: string; json?: boolean }) => {
      const json = Boolean(flags.json);
      try {
        const context = makeContext({ json });
        const result = await approveTask(
          taskId,
          { deny: Boolean(flags.deny), comment: flags.comment, traceMode: resolveTraceMode(flags.trace, context.settings) },
          { settings: context.settings, log: context.log, warn: (message) => context.log.warn({ taskId }, message) },
        );
        if (json) context.stdout(JSON.stringify(result) + '\n');
        else {
          const delivery = result.delivery;
          const where = delivery.prUrl ? `: ${delivery.prUrl}` : delivery.pushedTo ? `: pushed to ${delivery.pushedTo}` : '';
          process.stderr.write(`asp: ${taskId} ${delivery.hitlStatus}${where} (trace ${result.tracePath})\n`);
        }
        process.exitCode = EXIT.ok;
      } catch (error) {
        process.exitCode = reportFailure(error, { json, debug: false });
      }
    });
}
