import type { Command } from 'commander';
import { EXIT } from '../core/asp-error.js';
import { approveTask } from '../delivery/approve-task.js';
import { printableLines } from '../core/printable.js';
import { resolveTraceMode } from '../tracing/trace-mode.js';
import { makeContext, reportFailure } from './cli-context.js';

interface ApproveFlags {
  deny?: boolean;
  branch?: string;
  comment?: string;
  trace?: string;
  json?: boolean;
}

export function registerApproveCommand(program: Command): void {
  program
    .command('approve')
    .description('finish a task waiting at the HITL gate or whose push failed: push (and open its PR), or discard it with --deny')
    .argument('<task>', 'the task id')
    .option('--deny', 'discard what is pending (a decision or a failed push): nothing is pushed, the clone is removed')
    .option('--branch <name>', 'push under this branch instead (after a push refused because the branch exists)')
    .option('--comment <text>', 'why; recorded in the trace with who decided and when')
    .option('--trace <mode>', 'langfuse | json | off, as for asp run')
    .option('--json', 'print the result as JSON')
    .action(async (taskId: string, flags: ApproveFlags) => {
      const json = Boolean(flags.json);
      try {
        const context = makeContext({ json });
        const result = await approveTask(
          taskId,
          { deny: Boolean(flags.deny), branch: flags.branch, comment: flags.comment, traceMode: resolveTraceMode(flags.trace, context.settings) },
          { settings: context.settings, log: context.log, warn: (message) => context.log.warn({ taskId }, message) },
        );
        // A push that failed again is the task failing (exit 1), with the work kept for the next try.
        const exitCode = result.error ? EXIT.taskFailed : EXIT.ok;
        if (json) context.stdout(JSON.stringify({ ...result, exitCode }) + '\n');
        if (result.error) process.stderr.write(`asp: error: ${printableLines(result.error)}\n`);
        else if (!json) {
          const delivery = result.delivery;
          const where = delivery.prUrl ? `: ${delivery.prUrl}` : delivery.pushedTo ? `: pushed to ${delivery.pushedTo}` : '';
          process.stderr.write(`asp: ${taskId} ${result.status === 'rejected' ? 'rejected: the changes are discarded' : delivery.hitlStatus}${printableLines(where)} (trace ${result.tracePath})\n`);
        }
        process.exitCode = exitCode;
      } catch (error) {
        process.exitCode = reportFailure(error, { json, debug: false });
      }
    });
}
