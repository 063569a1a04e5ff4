import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { AspError, EXIT, systemErrorCode } from '../core/asp-error.js';
import { batchProgress } from '../batch/batch-progress.js';
import { writeJsonReport, writeJunitReport, type BatchSummary } from '../batch/batch-report.js';
import { batchIdFor } from '../batch/journal.js';
import { earlierWork, lastEnds } from '../batch/journal-time.js';
import { traceName } from '../config/settings.js';
import { mergeReports } from '../batch/merge-reports.js';
import { readBatchReport } from '../batch/report-file.js';
import { defaultConcurrency, runBatch } from '../batch/run-batch.js';
import { describeShard, parseShard, takeShard, type Shard } from '../batch/shard.js';
import { describeInvalid, readTaskList } from '../batch/task-list.js';
import { formatDuration, parseDuration } from '../config/units.js';
import { sweep } from '../reaper/sweep.js';
import { systemClock } from '../core/clock.js';
import { resolveTraceMode } from '../tracing/trace-mode.js';
import type { Log } from '../core/log.js';
import { printable, printableLines } from '../core/printable.js';
import { makeContext, reportFailure } from './cli-context.js';
import { dryRunManifests, formatManifests } from './dry-run.js';
import { installInterruptHandlers } from './interrupts.js';
import { wholeNumber } from './number-flags.js';

interface BatchFlags {
  concurrency?: string;
  prewarm: boolean;
  resume?: boolean;
  retries: string;
  engineWait: string;
  skipInvalid?: boolean;
  report?: string;
  junit?: string;
  trace?: string;
  shard?: string;
  backend?: string;
  namespace?: string;
  session?: string;
  user?: string;
  dryRun?: boolean;
  json?: boolean;
  debug?: boolean;
}

interface MergeFlags {
  json?: boolean;
  debug?: boolean;
}

export function registerBatchCommand(program: Command): void {
  const batch = program
    .command('batch')
    .description('run a list of tasks (JSON lines, or a JSON array) through a bounded pool')
    .argument('<tasks>', 'tasks.jsonl (one task spec per line) or tasks.json (an array)')
    .option('--concurrency <n>', 'tasks at once (default: from CPU count and memory limits)')
    .option('--resume', 'run only the tasks that did not finish in an earlier run of this list')
    .option('--no-prewarm', "do not make the next tasks' sandboxes while the current ones run")
    .option('--retries <n>', 'retries for infrastructure failures (task failures are never retried)', '2')
    .option('--engine-wait <duration>', 'after an infrastructure failure, how long to wait for the container engine to answer again before the batch stops (resume it with --resume)', '2m')
    .option('--skip-invalid', 'run the valid tasks even when some lines are invalid')
    .option('--report <file>', 'write a JSON report (per task: status, exit code, duration, cost, trace id, artifacts)')
    .option('--junit <file>', 'write a JUnit XML report (one testcase per task)')
    .option('--trace <mode>', 'langfuse | json | off, for every task, as for asp run')
    .option('--shard <i/n>', 'run shard i of n (0 <= i < n) of the list, e.g. $JOB_COMPLETION_INDEX/8 (or ASP_SHARD=i/n)')
    .option('--backend <name>', 'docker or k8s, for every line that names none (default: ASP_BACKEND, else docker)')
    .option('--namespace <name>', 'the Kubernetes namespace of the pods (default: ASP_K8S_NAMESPACE, else the context’s)')
    .option('--session <id>', "Langfuse session of the tasks' traces (default: the list's batch id, the same for all its shards)")
    .option('--user <name>', "Langfuse user of the tasks' traces (default: ASP_TRACE_USER, the CI actor, else the host user)")
    .option('--dry-run', "print what each task of the (shard's) list would create, and stop")
    .option('--json', 'print one JSON summary on stdout; logs go to stderr')
    .option('--debug', 'verbose logs and stack traces')
    .action(async (file: string, flags: BatchFlags) => {
      process.exitCode = await batchCommand(file, flags);
    });
  // No implicit `asp batch help`: a word after `batch` is a task list, unless it is merge-reports.
  batch.helpCommand(false);
  batch
    .command('merge-reports')
    .description("merge the --report files of a list's shards into one report of the same shape")
    .argument('<out>', 'the merged report to write (written whole or not at all)')
    .argument('<reports...>', "the shards' --report files")
    .option('--json', 'print the merged report on stdout too')
    .option('--debug', 'stack traces')
    .action(async (out: string, reports: string[], flags: MergeFlags, command: Command) => {
      // `asp batch` has --json and --debug too and takes them wherever they stand, so it is asked as well.
      const parent: Partial<BatchFlags> = command.parent?.opts<Partial<BatchFlags>>() ?? {};
      const json = Boolean(flags.json ?? parent.json);
      const debug = Boolean(flags.debug ?? parent.debug);
      const stray = command.parent?.options.find((option) => !['json', 'debug'].includes(option.attributeName()) && command.parent?.getOptionValueSource(option.attributeName()) === 'cli');
      process.exitCode = stray
        ? reportFailure(new AspError('BAD_INPUT', `asp batch merge-reports does not take ${stray.long ?? stray.flags}`, 'it takes <out.json> <report.json>... [--json]'), { json, debug })
        : await mergeCommand(out, reports, { json, debug });
    });
}

async function batchCommand(file: string, flags: BatchFlags): Promise<number> {
  const json = Boolean(flags.json);
  const debug = Boolean(flags.debug);
  try {
    const retries = wholeNumber('--retries', flags.retries, 0, 10);
    const engineWaitMs = parseDuration(flags.engineWait);
    if (engineWaitMs === undefined || engineWaitMs > 86_400_000) {
      throw new AspError('BAD_INPUT', `--engine-wait "${flags.engineWait}" is not a duration from 1ms to 24h`, 'pass e.g. --engine-wait 2m (or 30s, 1h)');
    }
    const shard = shardFrom(flags.shard, process.env.ASP_SHARD);
    const list = await readTaskList(file);
    if (list.invalid.length && !flags.skipInvalid) {
      // One bad line is one line of error; several are listed one per line under a count.
      const what =
        list.invalid.length === 1 ? `${describeInvalid(file, list.invalid)} (nothing started)` : `${list.invalid.length} invalid task(s), nothing started:\n${describeInvalid(file, list.invalid)}`;
      throw new AspError('BAD_INPUT', what, list.invalid.length === 1 ? 'fix that line, or pass --skip-invalid to run the rest' : 'fix those lines, or pass --skip-invalid to run the rest');
    }
    const taken = shard ? takeShard(list, shard) : list;
    const concurrency = flags.concurrency !== undefined ? wholeNumber('--concurrency', flags.concurrency, 1, 256) : defaultConcurrency(taken.entries);
    const context = makeContext({ json, debug, backend: flags.backend, namespace: flags.namespace });
    if (flags.dryRun) {
      const manifests: object[] = [];
      for (const entry of taken.entries) manifests.push(...(await dryRunManifests(entry.spec, context, path.dirname(path.resolve(file)))));
      context.stdout(await formatManifests(manifests, json));
      return EXIT.ok;
    }
    const traceMode = resolveTraceMode(flags.trace, context.settings);
    if (list.invalid.length) context.log.warn({ invalid: list.invalid }, `skipping ${list.invalid.length} invalid task(s):\n${describeInvalid(file, list.invalid)}`);
    const content = await readFile(file, 'utf8');
    const batchId = batchIdFor(file, content, shard);
    const [session, user] = [traceName('--session', flags.session), traceName('--user', flags.user)];
    const resuming = flags.resume ? ', resuming' : '';
    if (!shard) context.log.info({ batchId, tasks: list.entries.length, concurrency }, `batch ${batchId}: ${list.entries.length} task(s), concurrency ${concurrency}${resuming}`);
    else if (taken.entries.length === 0) {
      context.log.info(
        { batchId, shard, tasks: 0, listTasks: list.entries.length },
        `batch ${batchId}: shard ${describeShard(shard)} takes none of the list's ${list.entries.length} task(s): nothing to run`,
      );
    } else {
      context.log.info(
        { batchId, shard, tasks: taken.entries.length, listTasks: list.entries.length, concurrency },
        `batch ${batchId}: shard ${describeShard(shard)} takes ${taken.entries.length} of the list's ${list.entries.length} task(s), concurrency ${concurrency}${resuming}`,
      );
    }
    const interrupts = installInterruptHandlers(context.log);
    // Clear up after dead runs side by side with the batch's start: it never throws and never touches a live run. A
    // shard with no tasks starts nothing and asks nothing of the engine: its report (that it covered its shard) is
    // all it is for, and it must not fail on a machine whose engine is not up.
    const sweeping = taken.entries.length ? sweep({ backend: context.backend, settings: context.settings, clock: systemClock, log: context.log }) : Promise.resolve();
    try {
      const summary = await runBatch(
        taken,
        {
          file,
          batchId,
          concurrency,
          resume: Boolean(flags.resume),
          retries,
          backoffMs: 1000,
          engineWaitMs,
          invalidCount: taken.invalid.length,
          listIdentity: { digest: list.digest, tasks: list.entries.length },
          shard: shard ?? null,
          junit: Boolean(flags.junit),
          prewarm: flags.prewarm,
        },
        {
          backend: context.backend,
          backendFor: context.backendFor,
          settings: context.settings,
          clock: systemClock,
          // Per-task step lines would drown the progress; warnings and errors still show.
          log: json || debug ? context.log : quietLog(context.log),
          // Paths inside a task list are relative to the list, not to wherever asp was started.
          cwd: path.dirname(path.resolve(file)),
          progress: batchProgress(taken.entries.length, { tty: Boolean(process.stderr.isTTY) && process.env.CI !== 'true', write: (text) => process.stderr.write(text) }),
          signal: interrupts.signal,
          forceSignal: interrupts.forceSignal,
          traceMode,
          // One Langfuse session for the whole list: its shards (each a batch of its own) group together.
          session: session ?? batchIdFor(file, content, undefined),
          user,
        },
      );
      if (flags.report) await writeReport(flags.report, (target) => writeJsonReport(target, summary));
      // Tasks taken from the journal keep the time they took: the suite's time and start take them in.
      const earlier = summary.journal && summary.tasks.some((task) => task.resumed) ? earlierWork(summary.tasks, await lastEnds(summary.journal)) : undefined;
      const startedAt = new Date(Date.now() - summary.durationMs);
      if (flags.junit) {
        const suite = earlier ? { ...summary, durationMs: summary.durationMs + earlier.ms } : summary;
        const firstStart = earlier?.startedAt && earlier.startedAt < startedAt ? earlier.startedAt : startedAt;
        await writeReport(flags.junit, (target) => writeJunitReport(target, suite, firstStart));
      }
      if (json) context.stdout(JSON.stringify(summary) + '\n');
      else {
        const where = shard ? `shard ${describeShard(shard)}: ` : '';
        const fromJournal = earlier?.tasks ? `; ${earlier.tasks} of them from the journal, not run again (they took ${formatDuration(earlier.ms)} before)` : '';
        process.stderr.write(`asp batch: ${where}${describeCounts(summary)} in ${formatDuration(summary.durationMs)}${fromJournal} (concurrency ${summary.concurrency}; journal ${summary.journal})\n`);
        const resume = `asp batch ${file}${shard ? ` --shard ${describeShard(shard)}` : ''} --resume`;
        if (summary.exitCode === EXIT.interrupted) process.stderr.write(`asp batch: interrupted; continue with: ${resume}\n`);
        else if (summary.stopped) process.stderr.write(`asp batch: stopped early; continue with: ${resume}\n`);
      }
      return summary.exitCode;
    } finally {
      interrupts.dispose();
      await sweeping;
    }
  } catch (error) {
    return reportFailure(error, { json, debug });
  }
}

/** --shard wins over ASP_SHARD; an empty ASP_SHARD is unset, as a CI template that fills in nothing leaves it. */
function shardFrom(flag: string | undefined, env: string | undefined): Shard | undefined {
  if (flag !== undefined) return parseShard(flag, '--shard');
  if (env) return parseShard(env, 'ASP_SHARD');
  return undefined;
}

function describeCounts(summary: BatchSummary): string {
  return (
    `${summary.passed} passed, ${summary.failed} failed, ${summary.errors} errors, ${summary.interrupted + summary.notRun} not finished` +
    `${summary.invalid ? `, ${summary.invalid} invalid` : ''} of ${summary.total}`
  );
}

/**
 * asp batch merge-reports: every report read and checked, and the merge made, before anything is written; the
 * merged report then appears whole (written aside and renamed) or not at all. Exits as the merged batch would.
 */
async function mergeCommand(out: string, files: string[], flags: { json: boolean; debug: boolean }): Promise<number> {
  try {
    const inputs = [];
    for (const file of files) inputs.push({ file, report: await readBatchReport(file) });
    const { summary, warnings } = mergeReports(inputs);
    await writeReport(out, (target) => writeJsonReport(target, summary));
    // Said once the merge stands: a merge that fails to write says that, in one line, and nothing else.
    for (const warning of warnings) process.stderr.write(`asp: warning: ${printableLines(warning)}\n`);
    if (flags.json) process.stdout.write(printable(JSON.stringify(summary)) + '\n');
    else {
      const covered = summary.shards?.length ?? 0;
      const count = summary.shards?.[0]?.count ?? 1;
      process.stderr.write(`asp batch merge-reports: ${covered} of ${count} shard(s): ${describeCounts(summary)}; wrote ${printableLines(out)} (exit code ${summary.exitCode})\n`);
    }
    return summary.exitCode;
  } catch (error) {
    return reportFailure(error, flags);
  }
}

/** Why a report path cannot be written, in words (the error itself names the temporary file beside it). */
const UNWRITABLE: Record<string, string> = {
  ENOENT: 'its directory does not exist',
  ENOTDIR: 'a part of its path is not a directory',
  EISDIR: 'it is a directory',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EROFS: 'the file system is read-only',
};

/** A report path that cannot be written is the user's to fix (exit 2); a full disk is not, and stays exit 3. */
async function writeReport(file: string, write: (file: string) => Promise<void>): Promise<void> {
  try {
    await write(file);
  } catch (error) {
    const why = UNWRITABLE[systemErrorCode(error) ?? ''];
    if (why) throw new AspError('BAD_INPUT', `cannot write the report ${file}: ${why}`, 'name a file in a directory that exists and can be written', { cause: error });
    throw error;
  }
}

function quietLog(log: Log): Log {
  return { info: () => {}, debug: () => {}, warn: log.warn, error: log.error };
}
