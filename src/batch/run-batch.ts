import os from 'node:os';
import path from 'node:path';
import { AspError, errorMessage, EXIT, exitCodeFor } from '../core/asp-error.js';
import { githubToken, type Settings } from '../config/settings.js';
import type { DockerPort } from '../docker/port.js';
import type { Clock } from '../core/clock.js';
import type { Log } from '../core/log.js';
import { runTask, type TaskResult } from '../supervisor/run-task.js';
import { ensureSandboxImage } from '../supervisor/sandbox-image.js';
import { readStepRecord } from '../supervisor/step-records.js';
import { CHECK_ARTIFACTS_DIR } from '../supervisor/check-phase.js';
import type { TraceDocument } from '../tracing/trace-model.js';
import { parseTraceDocument } from '../tracing/trace-schema.js';
import { readHostFile } from '../workspace/host-state.js';
import { workspacePaths } from '../workspace/host-workspace.js';
import type { TraceMode } from '../tracing/trace-mode.js';
import { RepoMirrors } from '../workspace/repo-mirror.js';
import type { BatchProgress } from './batch-progress.js';
import type { BatchSummary, TaskOutcome } from './batch-report.js';
import { BatchJournal, type FinishedRecord } from './journal.js';
import type { BatchEntry, TaskList } from './task-list.js';

export interface BatchOptions {
  file: string;
  batchId: string;
  concurrency: number;
  resume: boolean;
  /** Attempts after the first for infrastructure failures (never for task failures). */
  retries: number;
  /** Backoff before retry n is backoffMs * 2^(n-1). */
  backoffMs: number;
  invalidCount: number;
}

export interface BatchDeps {
  docker: DockerPort;
  settings: Settings;
  clock: Clock;
  log: Log;
  cwd: string;
  progress: BatchProgress;
  signal?: AbortSignal | undefined;
  forceSignal?: AbortSignal | undefined;
  traceMode?: TraceMode | undefined;
}

/** A safe default: no more tasks than cores, and no more than three quarters of memory can hold at their limits. */
export function defaultConcurrency(entries: BatchEntry[]): number {
  const largest = Math.max(...entries.map((entry) => entry.spec.limits.memory), 1);
  const byMemory = Math.floor((os.totalmem() * 0.75) / largest);
  return Math.max(1, Math.min(os.availableParallelism(), byMemory));
}

/**
 * Runs a task list through a bounded pool. Every start and end goes to the journal first, so a batch killed
 * at any point resumes with `--resume`; infrastructure failures are retried with backoff, task failures never.
 */
export async function runBatch(list: TaskList, options: BatchOptions, deps: BatchDeps): Promise<BatchSummary> {
  const startedAt = deps.clock.now();
  const journal = new BatchJournal(deps.settings.home, options.batchId);
  const journaled = options.resume ? journal.finished() : { done: new Map<string, FinishedRecord>(), damaged: 0 };
  const done = journaled.done;
  if (journaled.damaged) deps.log.warn({ journal: journal.file }, `${journaled.damaged} damaged line(s) in the batch journal ${journal.file} ignored: their tasks run again`);
  const mirrors = new RepoMirrors(path.join(deps.settings.home, 'mirrors'), deps.settings.hostEnv, githubToken(deps.settings));
  const outcomes = new Map<string, TaskOutcome>();

  // One image check (and build) for the whole batch, before the pool: concurrent first runs must not each build it.
  if (list.entries.some((entry) => !entry.spec.image)) await ensureSandboxImage(deps.docker, {
    onBuildStart: (tag) => deps.log.info({ image: tag }, `building the sandbox image ${tag}; this takes a minute`),
  });

  const queue = [...list.entries];
  const worker = async () => {
    for (let entry = queue.shift(); entry; entry = queue.shift()) {
      const previous = done.get(entry.key);
      if (previous) {
        const outcome = fromJournal(entry, previous);
        outcomes.set(entry.key, outcome);
        deps.progress.finished(outcome);
        continue;
      }
      if (deps.signal?.aborted) return;
      deps.progress.started(entry.key);
      const outcome = await runWithRetries(entry, options, deps, journal, mirrors);
      outcomes.set(entry.key, outcome);
      deps.progress.finished(outcome);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency) }, worker));
  deps.progress.close();

  const tasks = list.entries.map((entry) => outcomes.get(entry.key) ?? notRun(entry));
  const count = (...statuses: TaskOutcome['status'][]) => tasks.filter((task) => statuses.includes(task.status)).length;
  const summary: Omit<BatchSummary, 'exitCode'> = {
    batchId: options.batchId,
    file: options.file,
    journal: journal.file,
    concurrency: options.concurrency,
    total: tasks.length,
    passed: count('passed', 'awaiting_approval'),
    failed: count('failed', 'timeout'),
    errors: count('error'),
    interrupted: count('interrupted'),
    notRun: count('not-run'),
    invalid: options.invalidCount,
    durationMs: deps.clock.now().getTime() - startedAt.getTime(),
    tasks,
  };
  return { ...summary, exitCode: batchExitCode(summary, Boolean(deps.signal?.aborted)) };
}

function batchExitCode(summary: Omit<BatchSummary, 'exitCode'>, interrupted: boolean): number {
  if (interrupted || summary.interrupted > 0) return EXIT.interrupted;
  if (summary.errors > 0) return summary.tasks.some((task) => task.status === 'error' && task.exitCode === EXIT.infrastructure) ? EXIT.infrastructure : EXIT.badInput;
  if (summary.failed > 0 || summary.invalid > 0) return EXIT.taskFailed;
  return EXIT.ok;
}

async function runWithRetries(entry: BatchEntry, options: BatchOptions, deps: BatchDeps, journal: BatchJournal, mirrors: RepoMirrors): Promise<TaskOutcome> {
  for (let attempt = 1; ; attempt += 1) {
    journal.append({ event: 'start', key: entry.key, at: deps.clock.now().toISOString(), attempt });
    const outcome = await attemptTask(entry, attempt, deps, mirrors);
    journal.append({
      event: 'end',
      key: entry.key,
      at: deps.clock.now().toISOString(),
      attempt,
      status: outcome.status,
      ...(outcome.taskId ? { taskId: outcome.taskId } : {}),
      ...(outcome.exitCode !== null ? { exitCode: outcome.exitCode } : {}),
      ...(outcome.durationMs !== null ? { durationMs: outcome.durationMs } : {}),
      ...(outcome.costUsd !== null ? { costUsd: outcome.costUsd } : {}),
      ...(outcome.traceId ? { traceId: outcome.traceId } : {}),
      ...(outcome.artifactsDir ? { artifactsDir: outcome.artifactsDir } : {}),
      ...(outcome.failedStep ? { failedStep: outcome.failedStep } : {}),
      ...(outcome.failure ? { failure: outcome.failure } : {}),
      ...(outcome.outputTail ? { outputTail: outcome.outputTail } : {}),
      ...(outcome.error ? { error: outcome.error } : {}),
    });
    const infrastructure = outcome.status === 'error' && outcome.exitCode === EXIT.infrastructure;
    if (!infrastructure || attempt > options.retries || deps.signal?.aborted) return outcome;
    const wait = options.backoffMs * 2 ** (attempt - 1);
    deps.log.warn({ task: entry.key, attempt, waitMs: wait }, `${entry.key}: infrastructure failure (${outcome.error}); retrying in ${wait} ms`);
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

async function attemptTask(entry: BatchEntry, attempt: number, deps: BatchDeps, mirrors: RepoMirrors): Promise<TaskOutcome> {
  const base = { key: entry.key, line: entry.line, attempts: attempt, resumed: false };
  try {
    const result = await runTask(entry.spec, {
      docker: deps.docker,
      settings: deps.settings,
      clock: deps.clock,
      log: deps.log,
      cwd: deps.cwd,
      // Parallel tasks' output would interleave into noise: it stays in each task's .asp/ (events.jsonl, <step>.json).
      writeOutput: () => {},
      signal: deps.signal,
      forceSignal: deps.forceSignal,
      mirrors,
      reclaimUnfinished: true,
      traceMode: deps.traceMode,
    });
    return { ...base, ...(await describeResult(result)) };
  } catch (error) {
    const exitCode = error instanceof AspError ? exitCodeFor(error.code) : EXIT.infrastructure;
    return {
      ...base,
      taskId: null,
      status: deps.signal?.aborted ? 'interrupted' : 'error',
      exitCode: deps.signal?.aborted ? EXIT.interrupted : exitCode,
      durationMs: null,
      costUsd: null,
      traceId: null,
      artifactsDir: null,
      failedStep: null,
      failure: errorMessage(error),
      outputTail: null,
      error: errorMessage(error),
    };
  }
}

async function describeResult(result: TaskResult): Promise<Omit<TaskOutcome, 'key' | 'line' | 'attempts' | 'resumed'>> {
  const workspace = workspacePaths(path.dirname(result.workspacePath), result.taskId);
  const artifactsDir = workspace.artifactsDir;
  const failing = (steps: TaskResult['steps']) => steps.find((step) => step.status === 'failed' || step.status === 'timeout' || step.status === 'interrupted');
  // A task whose steps passed can still fail its clean-room check: then the check step is the one to show.
  const stepFailed = failing(result.steps);
  const checkFailed = stepFailed ? undefined : failing(result.check?.steps ?? []);
  const failed = stepFailed ?? (checkFailed ? { ...checkFailed, name: `check:${checkFailed.name}` } : undefined);
  // The step's record is the sandbox's (or the host's, for a step it killed): data, read with its schema.
  const outputTail = stepFailed
    ? ((await readStepRecord(artifactsDir, stepFailed.name))?.outputTail ?? null)
    : checkFailed
      ? ((await readStepRecord(path.join(artifactsDir, CHECK_ARTIFACTS_DIR), checkFailed.name))?.outputTail ?? null)
      : null;
  // The cost comes from the trace's master copy, the one the sandbox cannot write.
  const document = await readHostFile(workspace, 'trace')
    .then((content) => (content === undefined ? undefined : parseTraceDocument(content)))
    .catch(() => undefined);
  return {
    taskId: result.taskId,
    status: result.status,
    exitCode: result.exitCode,
    durationMs: result.durationMs,
    costUsd: document ? costOf(document) : null,
    traceId: result.traceId,
    artifactsDir,
    failedStep: failed?.name ?? null,
    failure: failed ? (failed.status === 'failed' ? `step ${failed.name} exited ${failed.exitCode}` : `step ${failed.name} ${failed.status === 'timeout' ? 'passed its deadline' : 'was interrupted'}`) : (result.error ?? null),
    outputTail,
    error: result.error ?? null,
    check: result.check ? { status: result.check.status, exitCode: result.check.exitCode, steps: result.check.steps.map(({ name, status, exitCode }) => ({ name, status, exitCode })) } : null,
  };
}

function costOf(document: TraceDocument): number {
  const score = document.scores.find((entry) => entry.name === 'probe_cost_usd');
  if (score) return score.value;
  return document.observations.reduce((sum, observation) => sum + (observation.costDetails?.total ?? 0), 0);
}

function fromJournal(entry: BatchEntry, record: FinishedRecord): TaskOutcome {
  return {
    key: entry.key,
    line: entry.line,
    taskId: record.taskId ?? null,
    status: record.status,
    exitCode: record.exitCode ?? null,
    durationMs: record.durationMs ?? null,
    costUsd: record.costUsd ?? null,
    traceId: record.traceId ?? null,
    artifactsDir: record.artifactsDir ?? null,
    attempts: record.attempt,
    failedStep: record.failedStep ?? null,
    failure: record.failure ?? null,
    outputTail: record.outputTail ?? null,
    error: record.error ?? null,
    resumed: true,
  };
}

function notRun(entry: BatchEntry): TaskOutcome {
  return {
    key: entry.key,
    line: entry.line,
    taskId: null,
    status: 'not-run',
    exitCode: null,
    durationMs: null,
    costUsd: null,
    traceId: null,
    artifactsDir: null,
    attempts: 0,
    failedStep: null,
    failure: null,
    outputTail: null,
    error: null,
    resumed: false,
  };
}
