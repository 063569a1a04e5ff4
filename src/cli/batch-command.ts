import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { AspError, EXIT } from '../core/asp-error.js';
import { batchProgress } from '../batch/batch-progress.js';
import { writeJsonReport, writeJunitReport } from '../batch/batch-report.js';
import { batchIdFor } from '../batch/journal.js';
import { defaultConcurrency, runBatch } from '../batch/run-batch.js';
import { describeInvalid, readTaskList } from '../batch/task-list.js';
import { formatDuration } from '../config/units.js';
import { sweep } from '../reaper/sweep.js';
import { systemClock } from '../core/clock.js';
import { resolveTraceMode } from '../tracing/trace-mode.js';
import type { Log } from '../core/log.js';
import { makeContext, reportFailure } from './cli-context.js';
import { installInterruptHandlers } from './interrupts.js';

interface BatchFlags {
  concurrency?: string;
  resume?: boolean;
  retries: string;
  skipInvalid?: boolean;
  report?: string;
  junit?: string;
  trace?: string;
  json?: boolean;
  debug?: boolean;
}

export function registerBatchCommand(program: Command): void {
  program
    .command('batch')
    .description('run a list of tasks (JSON lines, or a JSON array) through a bounded pool')
    .argument('<tasks>', 'tasks.jsonl (one task spec per line) or tasks.json (an array)')
    .option('--concurrency <n>', 'tasks at once (default: from CPU count and memory limits)')
    .option('--resume', 'run only the tasks that did not finish in an earlier run of this list')
    .option('--retries <n>', 'retries for infrastructure failures (task failures are never retried)', '2')
    .option('--skip-invalid', 'run the valid tasks even when some lines are invalid')
    .option('--report <file>', 'write a JSON report (per task: status, exit code, duration, cost, trace id, artifacts)')
    .option('--junit <file>', 'write a JUnit XML report (one testcase per task)')
    .option('--trace <mode>', 'langfuse | json | off, for every task, as for asp run')
    .option('--json', 'print one JSON summary on stdout; logs go to stderr')
    .option('--debug', 'verbose logs and stack traces')
    .action(async (file: string, flags: BatchFlags) => {
      process.exitCode = await batchCommand(file, flags);
    });
}

async function batchCommand(file: string, flags: BatchFlags): Promise<number> {
  const json = Boolean(flags.json);
  const debug = Boolean(flags.debug);
  try {
    const retries = wholeNumber('--retries', flags.retries, 0, 10);
    const list = await readTaskList(file);
    if (list.invalid.length && !flags.skipInvalid) {
      // One bad line is one line of error; several are listed one per line under a count.
      const what =
        list.invalid.length === 1 ? `${describeInvalid(file, list.invalid)} (nothing started)` : `${list.invalid.length} invalid task(s), nothing started:\n${describeInvalid(file, list.invalid)}`;
      throw new AspError('BAD_INPUT', what, list.invalid.length === 1 ? 'fix that line, or pass --skip-invalid to run the rest' : 'fix those lines, or pass --skip-invalid to run the rest');
    }
    const concurrency = flags.concurrency !== undefined ? wholeNumber('--concurrency', flags.concurrency, 1, 256) : defaultConcurrency(list.entries);
    const context = makeContext({ json, debug });
    const traceMode = resolveTraceMode(flags.trace, context.settings);
    if (list.invalid.length) context.log.warn({ invalid: list.invalid }, `skipping ${list.invalid.length} invalid task(s):\n${describeInvalid(file, list.invalid)}`);
    const content = await readFile(file, 'utf8');
    const batchId = batchIdFor(file, content);
    context.log.info({ batchId, tasks: list.entries.length, concurrency }, `batch ${batchId}: ${list.entries.length} task(s), concurrency ${concurrency}${flags.resume ? ', resuming' : ''}`);
    const interrupts = installInterruptHandlers(context.log);
    // Clear up after dead runs side by side with the batch's start: it never throws and never touches a live run.
    const sweeping = sweep({ backend: context.backend, settings: context.settings, clock: systemClock, log: context.log });
    try {
      const summary = await runBatch(
        list,
        { file, batchId, concurrency, resume: Boolean(flags.resume), retries, backoffMs: 1000, invalidCount: list.invalid.length },
        {
          backend: context.backend,
          settings: context.settings,
          clock: systemClock,
          // Per-task step lines would drown the progress; warnings and errors still show.
          log: json || debug ? context.log : quietLog(context.log),
          // Paths inside a task list are relative to the list, not to wherever asp was started.
          cwd: path.dirname(path.resolve(file)),
          progress: batchProgress(list.entries.length, { tty: Boolean(process.stderr.isTTY) && process.env.CI !== 'true', write: (text) => process.stderr.write(text) }),
          signal: interrupts.signal,
          forceSignal: interrupts.forceSignal,
          traceMode,
        },
      );
      if (flags.report) await writeJsonReport(flags.report, summary);
      if (flags.junit) await writeJunitReport(flags.junit, summary, new Date(Date.now() - summary.durationMs));
      if (json) context.stdout(JSON.stringify(summary) + '\n');
      else {
        process.stderr.write(
          `asp batch: ${summary.passed} passed, ${summary.failed} failed, ${summary.errors} errors, ${summary.interrupted + summary.notRun} not finished` +
            `${summary.invalid ? `, ${summary.invalid} invalid` : ''} of ${summary.total} in ${formatDuration(summary.durationMs)} (concurrency ${summary.concurrency}; journal ${summary.journal})\n`,
        );
        if (summary.exitCode === EXIT.interrupted) process.stderr.write(`asp batch: interrupted; continue with: asp batch ${file} --resume\n`);
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

function wholeNumber(flag: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || value < min || value > max) {
    throw new AspError('BAD_INPUT', `${flag} "${text}" is not a whole number from ${min} to ${max}`, `pass e.g. ${flag} ${min + 1}`);
  }
  return value;
}

function quietLog(log: Log): Log {
  return { info: () => {}, debug: () => {}, warn: log.warn, error: log.error };
}
