import type { Command } from 'commander';
import { printableLine } from '../core/printable.js';
import { EXIT } from '../core/asp-error.js';
import { formatAge, formatBytes } from '../config/units.js';
import { supervisorState } from '../backend/ownership-labels.js';
import { pruneWorkspaces, type PruneReport } from '../reaper/prune-workspaces.js';
import { systemClock } from '../core/clock.js';
import { ownershipOf } from '../workspace/host-workspace.js';
import { directoryBytes, listWorkspaces } from '../workspace/workspace-list.js';
import { deliveryHold } from '../delivery/delivery-plan.js';
import { parseAgeOption } from './age-option.js';
import { makeContext, reportFailure } from './cli-context.js';

interface PruneFlags {
  olderThan?: string;
  archive?: string;
  dryRun?: boolean;
  all?: boolean;
  json?: boolean;
}

export function registerWorkspacesCommand(program: Command): void {
  const workspaces = program.command('workspaces').description('list and prune the host dirs of tasks (<workspaces>/<task-id>)');
  workspaces
    .command('ls')
    .description('list task dirs: task, status, age, size')
    .option('--json', 'print one JSON object on stdout')
    .action(async (flags: { json?: boolean }) => {
      process.exitCode = await listCommand(Boolean(flags.json));
    });
  workspaces
    .command('prune')
    .description('delete the dirs of tasks that finished long enough ago (never kept tasks, never running ones)')
    .option('--older-than <age>', 'finished at least this long ago (default: ASP_RETENTION, 7d)')
    .option('--archive <dir>', 'first write <dir>/<task>.tar.gz of each .asp/')
    .option('--dry-run', 'list what would be deleted and delete nothing')
    .option('--all', 'also tasks kept with --keep')
    .option('--json', 'print the report as one JSON object on stdout')
    .action(async (flags: PruneFlags) => {
      process.exitCode = await pruneCommand(flags);
    });
}

async function listCommand(json: boolean): Promise<number> {
  try {
    const context = makeContext({ json });
    const now = systemClock.now();
    const entries = await listWorkspaces(context.settings.workspacesRoot, deliveryHold);
    const rows = await Promise.all(
      entries.map(async (entry) => {
        const { record } = entry;
        // A record still saying "running" whose supervisor is gone was abandoned; the next reap marks it so.
        const abandoned = record.status === 'running' && supervisorState(ownershipOf(record).supervisor) === 'dead';
        return {
          taskId: record.taskId,
          runId: record.runId,
          status: abandoned ? 'abandoned' : record.status,
          // Another process's wall time against ours: a clock set back since makes it negative, which no age is.
          ageMs: Math.max(0, now.getTime() - new Date(record.createdAt).getTime()),
          bytes: await directoryBytes(entry.dir),
          keep: record.keep,
          hasClone: entry.hasClone,
          awaitingDecision: entry.awaitingDecision,
          deliveryProblem: entry.deliveryProblem ?? null,
          createdAt: record.createdAt,
          finishedAt: record.finishedAt ?? null,
          dir: entry.dir,
        };
      }),
    );
    if (json) context.stdout(JSON.stringify({ root: context.settings.workspacesRoot, workspaces: rows }) + '\n');
    else if (!rows.length) context.stdout(`no task dirs under ${context.settings.workspacesRoot}\n`);
    else {
      const width = Math.max(4, ...rows.map((row) => row.taskId.length));
      context.stdout(`${'TASK'.padEnd(width)}  ${'STATUS'.padEnd(11)} ${'AGE'.padStart(5)} ${'SIZE'.padStart(10)}  NOTE\n`);
      for (const row of rows) {
        const note = [row.keep ? 'kept' : '', row.awaitingDecision ? 'awaiting asp approve' : '', row.hasClone ? 'clone present' : '', row.deliveryProblem ?? ''].filter(Boolean).join(', ');
        context.stdout(`${row.taskId.padEnd(width)}  ${row.status.padEnd(11)} ${formatAge(row.ageMs).padStart(5)} ${formatBytes(row.bytes).padStart(10)}  ${note}\n`);
      }
    }
    return EXIT.ok;
  } catch (error) {
    return reportFailure(error, { json, debug: false });
  }
}

async function pruneCommand(flags: PruneFlags): Promise<number> {
  const json = Boolean(flags.json);
  try {
    const olderThan = flags.olderThan !== undefined ? parseAgeOption('--older-than', flags.olderThan) : undefined;
    const context = makeContext({ json });
    const report = await pruneWorkspaces(
      { workspacesRoot: context.settings.workspacesRoot, clock: systemClock },
      { olderThanMs: olderThan ?? context.settings.retentionMs, dryRun: Boolean(flags.dryRun), all: Boolean(flags.all), archiveDir: flags.archive },
    );
    const failed = report.items.filter((item) => item.outcome === 'failed');
    const exitCode = failed.length ? EXIT.infrastructure : EXIT.ok;
    if (json) context.stdout(JSON.stringify({ ...report, exitCode }) + '\n');
    else context.stdout(describe(report));
    if (failed.length) process.stderr.write(`asp: error: ${failed.length} task dirs were not pruned: ${printableLine(failed[0]?.error ?? '')}\n`);
    return exitCode;
  } catch (error) {
    return reportFailure(error, { json, debug: false });
  }
}

function describe(report: PruneReport): string {
  const lines = report.items.map((item) => {
    const verb = item.outcome === 'pruned' ? 'pruned' : item.outcome === 'would-prune' ? 'would prune' : 'FAILED';
    const archive = item.archive ? ` → ${item.archive}` : '';
    return `${verb} ${item.taskId} (${item.status}, ${formatAge(item.ageMs)} old, ${formatBytes(item.bytes)})${archive}${item.error ? `: ${item.error}` : ''}`;
  });
  const done = report.items.filter((item) => item.outcome !== 'failed').length;
  const kept = report.kept ? `; ${report.kept} kept (--keep, or awaiting asp approve) left alone: --all takes them` : '';
  lines.push(`asp workspaces prune: ${report.dryRun ? 'would prune' : 'pruned'} ${done} task dirs finished over ${formatAge(report.olderThanMs)} ago${kept}`);
  return lines.join('\n') + '\n';
}
