import os from 'node:os';
import path from 'node:path';
import { AspError, errorMessage, EXIT, exitCodeFor } from '../core/asp-error.js';
import { githubToken, type BackendName, type Settings } from '../config/settings.js';
import type { PreparedImage, SandboxBackend } from '../backend/sandbox-backend.js';
import { mapBounded } from '../core/bounded-pool.js';
import type { Clock } from '../core/clock.js';
import type { Log } from '../core/log.js';
import { retry } from '../core/retry.js';
import { currentSupervisor, formatSupervisor, LABEL } from '../backend/ownership-labels.js';
import { runtimeLimits } from '../backend/sandbox-policy.js';
import { formatDuration } from '../config/units.js';
import { deliverTask } from '../delivery/deliver-task.js';
import { runTask, type TaskResult } from '../supervisor/run-task.js';
import { workspacePaths } from '../workspace/host-workspace.js';
import type { TraceMode } from '../tracing/trace-mode.js';
import { RepoMirrors } from '../workspace/repo-mirror.js';
import type { BatchProgress } from './batch-progress.js';
import { batchExitCode, countOutcomes, failureLine, type BatchSummary, type ListIdentity, type TaskOutcome } from './batch-report.js';
import { BatchJournal, type FinishedRecord } from './journal.js';
import { JunitBudget, renderTaskCases } from './junit-cases.js';
import { escapeXml } from './xml-escape.js';
import type { Shard } from './shard.js';
import type { BatchEntry, TaskList } from './task-list.js';
import type { PoolShape } from '../pool/pool-record.js';
import { poolSource, type WarmSource } from '../pool/warm-source.js';
import { WarmStock } from '../pool/warm-stock.js';

export interface BatchOptions {
  file: string;
  batchId: string;
  concurrency: number;
  resume: boolean;
  /** Attempts after the first for infrastructure failures (never for task failures). */
  retries: number;
  /** Backoff before retry n is backoffMs * 2^(n-1). */
  backoffMs: number;
  /**
   * How long the engine may go unanswering after an infrastructure failure (`--engine-wait`): meanwhile no task
   * starts or retries; past it the batch stops starting tasks, and `--resume` finishes it.
   */
  engineWaitMs: number;
  invalidCount: number;
  /** The whole list's identity, recorded in the report (the list given to runBatch may be one shard of it). */
  listIdentity: ListIdentity;
  shard: Shard | null;
  /** Whether a JUnit report is written (--junit): only then does a task's end keep its testcases, rendered and bounded. */
  junit?: boolean | undefined;
  /** Whether the next tasks' sandboxes are made while the current ones run (default; `--no-prewarm` turns it off). */
  prewarm?: boolean | undefined;
}

export interface BatchDeps {
  backend: SandboxBackend;
  /** The backend a line names (`"backend": "k8s"`), when it is not `backend`'s. */
  backendFor?: ((name: BackendName) => SandboxBackend) | undefined;
  settings: Settings;
  clock: Clock;
  log: Log;
  cwd: string;
  progress: BatchProgress;
  signal?: AbortSignal | undefined;
  forceSignal?: AbortSignal | undefined;
  traceMode?: TraceMode | undefined;
  /** Langfuse's session of every task's trace (the batch's id), and its user when `--user` names one. */
  session?: string | undefined;
  user?: string | undefined;
  /** Where a task takes a warm sandbox from (the batch's own made ahead, then the pools); set by runBatch. */
  warm?: WarmSource | undefined;
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
  const startedMs = deps.clock.monotonicMs();
  const journal = new BatchJournal(deps.settings.home, options.batchId);
  const journaled = options.resume ? journal.finished() : { done: new Map<string, FinishedRecord>(), damaged: 0 };
  const done = journaled.done;
  if (journaled.damaged) deps.log.warn({ journal: journal.file }, `${journaled.damaged} damaged line(s) in the batch journal ${journal.file} ignored: their tasks run again`);
  const mirrors = new RepoMirrors(path.join(deps.settings.home, 'mirrors'), deps.settings.hostEnv, githubToken(deps.settings));
  const outcomes = new Map<string, TaskOutcome>();
  const junit = options.junit ? new JunitBudget() : null;

  // One image check (and build) for the whole batch, before the pool, on each backend the lines use: concurrent
  // first runs must not each build it.
  const backendOf = (entry: BatchEntry) => (entry.spec.backend && deps.backendFor ? deps.backendFor(entry.spec.backend) : deps.backend);
  for (const backend of new Set(list.entries.filter((entry) => !entry.spec.image).map(backendOf))) {
    await backend.prepareImage({ onBuildStart: (tag) => deps.log.info({ image: tag }, `building the sandbox image ${tag}; this takes a minute`) });
  }

  // Each image a line names, checked once per backend before the pool (and the runner runtime made, for an image
  // that is not asp's): a missing one is that line's bad input, said with its line number, not one failure per attempt.
  const refused = new Map<string, string>();
  const imageKey = (entry: BatchEntry) => `${backendOf(entry).name}\n${entry.spec.image ?? ''}`;
  for (const entry of list.entries) {
    const key = imageKey(entry);
    if (!entry.spec.image || done.has(entry.key) || refused.has(key)) continue;
    refused.set(key, '');
    await backendOf(entry)
      .prepareImage({ image: entry.spec.image })
      .catch((error: unknown) => refused.set(key, errorMessage(error)));
  }

  // The next tasks' sandboxes, made while the current ones run (on a backend that has warm sandboxes).
  const stock =
    options.prewarm !== false && deps.backend.warm
      ? new WarmStock(deps.backend, { depth: options.concurrency, supervisor: currentSupervisor(), log: deps.log, now: () => deps.clock.now() })
      : undefined;
  if (stock) {
    const shapes: PoolShape[] = [];
    // Each image asked once (a list of thousands of lines names a few images).
    const images = new Map<string, Promise<PreparedImage | undefined>>();
    for (const entry of list.entries) {
      if (done.has(entry.key) || backendOf(entry) !== deps.backend || (entry.spec.image && refused.get(imageKey(entry)))) continue;
      const named = entry.spec.image ?? '';
      if (!images.has(named))
        images.set(
          named,
          deps.backend.prepareImage({ image: entry.spec.image }).catch(() => undefined),
        );
      const image = await images.get(named);
      // The limits its run will have (gVisor raises a low pids limit, resolve-task.ts): a sandbox of others is never taken.
      if (image) shapes.push({ image: image.ref, imageId: image.id, limits: runtimeLimits(entry.spec.runtime, entry.spec.limits).limits, runtime: entry.spec.runtime });
    }
    stock.plan(shapes);
  }
  const pools = poolSource(deps.settings.home, deps.backend);
  const warm: WarmSource = async (shape) => (await stock?.source(shape)) ?? pools(shape);
  const gate = new EngineGate(deps, options.engineWaitMs);
  /** Why the batch stopped starting tasks before the list was done (the engine gone, the journal unwritable). */
  let stopped: string | null = null;
  await mapBounded(list.entries, options.concurrency, async (entry) => {
    const previous = done.get(entry.key);
    // After an interrupt nothing new starts: what is left is reported as not run. Nor while the engine does not
    // answer (a task would only fail and spend its retries), nor once it has been gone past --engine-wait.
    if (!previous && (deps.signal?.aborted || stopped || !(await gate.answering()))) return;
    if (!previous) deps.progress.started(entry.key);
    const imageRefused = entry.spec.image ? refused.get(imageKey(entry)) || undefined : undefined;
    try {
      const outcome = previous ? fromJournal(entry, previous) : imageRefused ? badImage(entry, imageRefused) : await runWithRetries(entry, options, { ...deps, warm }, journal, mirrors, gate, junit);
      outcomes.set(entry.key, outcome);
      deps.progress.finished(outcome);
    } catch (error) {
      // Only the journal throws here (a full disk): what it cannot record, --resume runs again.
      stopped ??= `the batch journal ${journal.file} cannot be written (${errorMessage(error)}): no more tasks start; free some space and finish with --resume`;
      deps.log.error({ journal: journal.file }, stopped);
    }
  });
  deps.progress.close();
  await stock?.close();
  if (gate.gone) stopped ??= gate.gone;
  if (!deps.signal?.aborted && !gate.gone) await removeLeftovers(deps);
  const tasks = list.entries.map((entry) => outcomes.get(entry.key) ?? notRun(entry));
  const summary: Omit<BatchSummary, 'exitCode'> = {
    batchId: options.batchId,
    file: options.file,
    journal: journal.file,
    concurrency: options.concurrency,
    ...countOutcomes(tasks),
    invalid: options.invalidCount,
    durationMs: deps.clock.monotonicMs() - startedMs,
    list: options.listIdentity,
    shard: options.shard,
    stopped,
    tasks,
  };
  const exitCode = batchExitCode(summary, Boolean(deps.signal?.aborted));
  // A batch that stopped early is not done, whatever the tasks it ran say: exit 3, for --resume.
  return { ...summary, exitCode: stopped && exitCode < EXIT.infrastructure ? EXIT.infrastructure : exitCode };
}

async function runWithRetries(
  entry: BatchEntry,
  options: BatchOptions,
  deps: BatchDeps,
  journal: BatchJournal,
  mirrors: RepoMirrors,
  gate: EngineGate,
  junit: JunitBudget | null,
): Promise<TaskOutcome> {
  let last: TaskOutcome | undefined;
  const { answer } = await retry(
    async (attempt) => {
      // A retry waits for the engine to answer again; when it is gone for good, the last failure stands.
      if (last && !(await gate.answering())) return last;
      journal.append({ event: 'start', key: entry.key, at: deps.clock.now().toISOString(), attempt });
      const outcome = await attemptTask(entry, attempt, deps, mirrors, junit && { budget: junit, batchId: options.batchId });
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
        ...(outcome.tests ? { tests: outcome.tests } : {}),
        ...(outcome.outputTail ? { outputTail: outcome.outputTail } : {}),
        ...(outcome.error ? { error: outcome.error } : {}),
      });
      last = outcome;
      if (isInfrastructure(outcome)) gate.suspect();
      return outcome;
    },
    {
      attempts: options.retries + 1,
      // Only asp's own failures are worth another try; a task that failed would fail the same way again.
      retryable: (outcome) => isInfrastructure(outcome) && !deps.signal?.aborted && !gate.gone,
      delayMs: (attempt) => options.backoffMs * 2 ** (attempt - 1),
      onRetry: (outcome, attempt, waitMs) => deps.log.warn({ task: entry.key, attempt, waitMs }, `${entry.key}: infrastructure failure (${outcome.error}); retrying in ${waitMs} ms`),
    },
  );
  return answer;
}

function isInfrastructure(outcome: TaskOutcome): boolean {
  return outcome.status === 'error' && outcome.exitCode === EXIT.infrastructure;
}

/**
 * After an infrastructure failure the engine may be down (a daemon killed or restarting): one probe at a time asks
 * it (`describe`) with a growing pause, and meanwhile no task starts or retries. It opens again the moment the engine
 * answers; after `waitMs` without an answer the engine is taken for gone, and the batch starts nothing more.
 */
class EngineGate {
  private probing: Promise<boolean> | undefined;
  /** Why the batch stops, once the engine is taken for gone. */
  gone: string | null = null;

  constructor(
    private readonly deps: Pick<BatchDeps, 'backend' | 'log' | 'signal' | 'clock'>,
    private readonly waitMs: number,
  ) {}

  /** Starts a probe, unless one is running: a failure of asp's own may be the engine's absence. */
  suspect(): void {
    if (!this.gone) this.probing ??= this.probe().finally(() => (this.probing = undefined));
  }

  /** Whether tasks may start: at once when no probe runs, else once it knows. */
  async answering(): Promise<boolean> {
    if (this.probing) await this.probing;
    return !this.gone;
  }

  private async probe(): Promise<boolean> {
    const { backend, log, signal, clock } = this.deps;
    // On the monotonic clock: a wall clock set back must not stretch --engine-wait, nor one set forward end it.
    const started = clock.monotonicMs();
    let warned = false;
    for (let pause = 250; ; pause = Math.min(pause * 2, 5000)) {
      const answer = await backend.ping().then(
        () => undefined,
        (error: unknown) => errorMessage(error),
      );
      if (answer === undefined) {
        if (warned) log.warn({}, `the container engine answers again after ${formatDuration(clock.monotonicMs() - started)}; tasks start again`);
        return true;
      }
      const waited = clock.monotonicMs() - started;
      if (waited >= this.waitMs || signal?.aborted) {
        this.gone = `the container engine has not answered for ${formatDuration(waited)} (${answer}): no more tasks start; finish with --resume once it is back`;
        log.error({}, this.gone);
        return false;
      }
      if (!warned && waited >= 1000) {
        warned = true;
        log.warn({}, `the container engine does not answer (${answer}); waiting up to ${formatDuration(this.waitMs)} before any task starts or retries`);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(pause, this.waitMs - waited)));
    }
  }
}

/**
 * What this batch's tasks left on the engine because it could not remove it then (a daemon that died under them
 * brings their containers back exited, and keeps their volumes): removed at the end, when no task of it runs any
 * more. Kept objects (`--keep`) stay. It never fails the batch: what it cannot remove, `asp reap` can.
 */
async function removeLeftovers(deps: Pick<BatchDeps, 'backend' | 'log'>): Promise<void> {
  try {
    const owned = await deps.backend.listOwned([`${LABEL.supervisor}=${formatSupervisor(currentSupervisor())}`]);
    // A warm sandbox a kept task claimed is kept with it (its marker says so; its own labels are the batch's).
    const keptClaims = new Set(owned.flatMap((object) => (object.labels[LABEL.claims] && object.labels[LABEL.keep] === 'true' ? [object.labels[LABEL.claims]] : [])));
    const left = owned.filter((object) => object.labels[LABEL.keep] !== 'true' && !keptClaims.has(object.labels[LABEL.poolSandbox] ?? ''));
    let removed = 0;
    for (const object of left) {
      await deps.backend.removeOwned(object).then(
        () => (removed += 1),
        (error: unknown) => deps.log.warn({ name: object.name }, `cannot remove ${object.name}, left by a task of this batch: ${errorMessage(error)} (asp reap retries)`),
      );
    }
    if (removed) deps.log.info({ removed }, `removed ${removed} object(s) the engine kept of this batch's failed tasks`);
  } catch (error) {
    deps.log.warn({}, `cannot look for what this batch's tasks left on the engine: ${errorMessage(error)} (asp reap retries)`);
  }
}

async function attemptTask(entry: BatchEntry, attempt: number, deps: BatchDeps, mirrors: RepoMirrors, junit: { budget: JunitBudget; batchId: string } | null): Promise<TaskOutcome> {
  const base = { key: entry.key, line: entry.line, attempts: attempt, resumed: false };
  try {
    const run = await runTask(entry.spec, {
      backend: deps.backend,
      backendFor: deps.backendFor,
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
      warm: deps.warm,
      traceMode: deps.traceMode,
      session: deps.session,
      user: deps.user,
    });
    // Nobody can be asked at a gate in a batch: --hitl tasks wait for asp approve, --push and --pr tasks deliver.
    const described = describeResult(await deliverTask(run, { settings: deps.settings, log: deps.log, signal: deps.signal }));
    // Rendered now and bounded, so the batch holds a small string per task, not its reports' testcases until it ends.
    const cases = junit && run.testCases?.length ? renderTaskCases(run.testCases, `asp.batch.${escapeXml(junit.batchId)}.${escapeXml(entry.key)}`, junit.budget) : null;
    return { ...base, ...described, ...(cases ? { junitCases: cases } : {}) };
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

/** A batch's line for a task, from its result alone (nothing is read back from disk). */
function describeResult(result: TaskResult): Omit<TaskOutcome, 'key' | 'line' | 'attempts' | 'resumed'> {
  const { failedStep } = result;
  return {
    taskId: result.taskId,
    status: result.status,
    exitCode: result.exitCode,
    durationMs: result.durationMs,
    costUsd: result.costUsd,
    traceId: result.traceId,
    artifactsDir: workspacePaths(path.dirname(result.workspacePath), result.taskId).artifactsDir,
    failedStep: failedStep?.step ?? null,
    failure: failedStep ? failureLine(failedStep, result.tests ?? null) : (result.error ?? null),
    outputTail: failedStep?.outputTail ?? null,
    error: result.error ?? null,
    tests: result.tests ?? null,
    check: result.check ? { status: result.check.status, exitCode: result.check.exitCode, steps: result.check.steps.map(({ name, status, exitCode }) => ({ name, status, exitCode })) } : null,
    ...(result.egress ? { egress: result.egress } : {}),
  };
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
    ...(record.tests ? { tests: record.tests } : {}),
    resumed: true,
  };
}

/** A line whose image the daemon cannot run: bad input of that line (exit 2), never run, never retried. */
function badImage(entry: BatchEntry, why: string): TaskOutcome {
  const error = `line ${entry.line}: ${why}`;
  return { ...notRun(entry), status: 'error', exitCode: EXIT.badInput, failure: error, error };
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
