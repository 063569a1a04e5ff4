import { isDeepStrictEqual } from 'node:util';
import { AspError, EXIT } from '../core/asp-error.js';
import { batchExitCode, countOutcomes, type BatchSummary, type ShardSource, type TaskOutcome } from './batch-report.js';
import { unshardedBatchId } from './journal.js';
import { describeShard } from './shard.js';

export interface ReportInput {
  /** The file the report was read from, for the messages and the merged report's list of shards. */
  file: string;
  report: BatchSummary;
}

export interface MergedReport {
  summary: BatchSummary;
  /** Said on stderr; none of them stops the merge. */
  warnings: string[];
}

/**
 * Merges the reports the shards of one task list wrote into one report of the same shape: every task once, in the
 * list's order, the counts and the exit code recomputed as asp batch computes them, and the shards it was made of
 * listed. Reports of different lists or shard counts, a shard given twice, and a task with two different outcomes
 * are refused; a shard no report covers is a warning (its tasks are simply not in the merged report).
 */
export function mergeReports(inputs: ReportInput[]): MergedReport {
  const [first] = inputs;
  if (!first) throw new AspError('BAD_INPUT', 'no batch reports to merge', 'name the --report files of the shards, e.g. asp batch merge-reports out.json report-*.json');

  for (const input of inputs) {
    if (input.report.list.digest !== first.report.list.digest) {
      throw new AspError(
        'BAD_INPUT',
        `${first.file} and ${input.file} are reports of different task lists (${short(first.report.list.digest)} and ${short(input.report.list.digest)})`,
        'merge only the reports of the shards of one list; a list edited between shards is another list',
      );
    }
  }

  const sources = inputs.flatMap((input) => shardsOf(input).map((source) => ({ source, file: input.file })));
  const count = sources[0]?.source.count ?? 1;
  const seen = new Map<number, string>();
  for (const { source, file } of sources) {
    if (source.count !== count) {
      throw new AspError('BAD_INPUT', `${sources[0]?.file} is of shard(s) of ${count} but ${file} is shard ${describeShard(source)}`, 'merge the reports of one --shard count: i/n with the same n');
    }
    const other = seen.get(source.index);
    if (other !== undefined)
      throw new AspError('BAD_INPUT', `shard ${describeShard(source)} is in both ${other} and ${file}`, "merge each shard's report once (a shard run again: keep its later report)");
    seen.set(source.index, file);
  }

  const byKey = new Map<string, { task: TaskOutcome; file: string }>();
  for (const input of inputs) {
    for (const task of input.report.tasks) {
      const other = byKey.get(task.key);
      if (!other) byKey.set(task.key, { task, file: input.file });
      // The same outcome twice is one task reported twice; two outcomes of one task leave nothing to choose by.
      else if (!isDeepStrictEqual(other.task, task)) {
        throw new AspError(
          'BAD_INPUT',
          `task "${task.key}" is in both ${other.file} and ${input.file}, with different outcomes`,
          'each task belongs to one shard: merge the reports of one run of each shard',
        );
      }
    }
  }
  const tasks = [...byKey.values()].map((entry) => entry.task).sort((a, b) => a.line - b.line || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));

  const list = first.report.list;
  const missingShards = Array.from({ length: count }, (_, index) => index).filter((index) => !seen.has(index));
  const warnings: string[] = [];
  if (missingShards.length) {
    const names = missingShards.slice(0, 10).map((index) => `${index}/${count}`);
    const more = missingShards.length > names.length ? ` and ${missingShards.length - names.length} more` : '';
    warnings.push(`no report of shard(s) ${names.join(', ')}${more}: their tasks are not in the merged report (${tasks.length} of the list's ${list.tasks} are)`);
  } else if (tasks.length !== list.tasks) {
    warnings.push(`the shards' reports hold ${tasks.length} task(s) but the list has ${list.tasks}: were the shards run by different versions of asp?`);
  }

  const shards = sources.map(({ source }) => source).sort((a, b) => a.index - b.index);
  const summary: Omit<BatchSummary, 'exitCode'> = {
    batchId: unshardedBatchId(shards[0]?.batchId ?? first.report.batchId),
    file: first.report.file,
    journal: null,
    // The shards ran side by side, each with its own pool: at most this many tasks at once, and as long as the longest.
    concurrency: inputs.reduce((sum, input) => sum + input.report.concurrency, 0),
    ...countOutcomes(tasks),
    // Only shard 0 counts the list's invalid lines, so the sum counts each once.
    invalid: inputs.reduce((sum, input) => sum + input.report.invalid, 0),
    durationMs: Math.max(...inputs.map((input) => input.report.durationMs)),
    list,
    shard: null,
    shards,
    missingShards,
    tasks,
  };
  // A shard interrupted before its tasks started has only not-run tasks to show for it: its 130 carries over.
  const interrupted = inputs.some((input) => input.report.exitCode === EXIT.interrupted);
  return { summary: { ...summary, exitCode: batchExitCode(summary, interrupted) }, warnings };
}

/** The shards a report covers: its own (the whole list is shard 0 of 1), or for a merged report those it lists. */
function shardsOf(input: ReportInput): ShardSource[] {
  const { report } = input;
  if (report.shards) return report.shards;
  const shard = report.shard ?? { index: 0, count: 1 };
  return [
    { index: shard.index, count: shard.count, report: input.file, batchId: report.batchId, journal: report.journal, total: report.total, exitCode: report.exitCode, durationMs: report.durationMs },
  ];
}

function short(digest: string): string {
  return digest.slice(0, 'sha256:'.length + 12);
}
