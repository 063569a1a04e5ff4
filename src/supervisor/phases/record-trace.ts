import { lstat, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Settings } from '../../config/settings.js';
import type { Clock } from '../../core/clock.js';
import type { Log } from '../../core/log.js';
import type { ResolvedStep } from '../../config/pipeline.js';
import { TracePublication } from '../../tracing/publish-trace.js';
import type { TraceMode } from '../../tracing/trace-mode.js';
import { readTestResults, reportedTests, testLabel, type TestResults } from '../../tracing/test-results.js';
import { copyAllForUser } from '../../workspace/host-state.js';
import { stepResults, type SessionOutcome, type StepResult } from '../session-outcome.js';
import { writeMissingStepRecords } from '../step-records.js';
import type { ClaimedTask } from './claim-workspace.js';
import { CHECK_STEP_PREFIX, type CheckResult } from './check.js';

export interface RecordedTrace {
  /** Each planned step as it ended (or never did). */
  steps: StepResult[];
  /** The trace, published once; delivery publishes it again when the gate decides. */
  trace: TracePublication;
  durationMs: number;
  finishedAt: Date;
  /** The repository's own test results: the check's reports when a check ran, else the steps'; null when none. */
  tests: TestResults | null;
}

/**
 * After the sandboxes are gone: the user's copies in `.asp/`, the record of each step the sandbox could not write,
 * then the trace with its PROBE scores: `.asp/trace.json`, the trace store, and Langfuse (bounded; the outbox when
 * it fails).
 */
export async function recordTrace(
  task: ClaimedTask,
  ran: { steps: ResolvedStep[]; checkSteps: ResolvedStep[]; outcome: SessionOutcome; check: CheckResult | null; hitl: { required: boolean; awaiting: boolean } },
  deps: { settings: Settings; clock: Clock; log: Log; traceMode?: TraceMode | undefined; forceSignal?: AbortSignal | undefined },
): Promise<RecordedTrace> {
  const { workspace, events, warn } = task;
  const { outcome } = ran;
  await copyAllForUser(workspace, ['task', 'events'], warn);
  // The task's clock is anchored at its start (runTask): a difference of its times is monotonic time, whatever the
  // wall clock was set to meanwhile.
  const finishedAt = deps.clock.now();
  const durationMs = finishedAt.getTime() - task.startedAt.getTime();
  events.steps.stop(finishedAt, outcome.error ?? 'the task ended before the step did');
  const steps = stepResults(ran.steps, events.stepStarts, events.stepEnds, outcome.status, events.steps);
  const recorded = await writeMissingStepRecords(workspace.artifactsDir, events.steps, steps, warn);
  if (recorded.length) deps.log.info({ taskId: task.taskId, files: recorded }, `the sandbox could not write ${recorded.map((file) => `.asp/${file}`).join(', ')}: written by asp from the protocol`);
  await addArtifactOutputs(task, ran.steps, workspace.artifactsDir, '');
  if (ran.check) await addArtifactOutputs(task, ran.checkSteps, ran.check.artifactsDir, CHECK_STEP_PREFIX);
  const own = await addTestResults(task, workspace.artifactsDir, steps, '');
  const checked = ran.check ? await addTestResults(task, ran.check.artifactsDir, ran.check.steps, CHECK_STEP_PREFIX) : null;
  // The check, not the steps, decides whether the change works: its reports give probe_accuracy when it has check steps.
  const accuracyFrom = ran.checkSteps.length ? checked : own;
  const trace = new TracePublication(task.trace.finish({ ...outcome, durationMs, hitl: ran.hitl }), {
    settings: deps.settings,
    mode: deps.traceMode,
    artifactsDir: workspace.artifactsDir,
    stateDir: workspace.stateDir,
    // The check, not the steps, decides whether the change works: its test results give probe_accuracy.
    testsDir: ran.checkSteps.length ? (ran.check?.artifactsDir ?? null) : undefined,
    plannedSteps: ran.steps.length,
    ...(accuracyFrom?.summary.total ? { reportedTests: { passed: accuracyFrom.summary.passed, total: accuracyFrom.summary.total } } : {}),
    log: deps.log,
    warn,
    signal: deps.forceSignal,
  });
  await trace.publish();
  return { steps, trace, durationMs, finishedAt, tests: reportedTests(own, checked, ran.check !== null) };
}

/** The most of an artifact a span's output holds (the exporter cuts what is longer still). */
const ARTIFACT_OUTPUT_BYTES = 64 * 1024;

/**
 * An agent step's span output is the artifact it names (`"artifact"`, the ASP agents' planning.json...), as the host
 * extracted it: JSON when it parses, else its text; a file that is missing or too long leaves the output alone.
 */
async function addArtifactOutputs(task: ClaimedTask, steps: ResolvedStep[], dir: string, prefix: string): Promise<void> {
  for (const step of steps) {
    if (!step.artifact) continue;
    const file = path.join(dir, step.artifact);
    const info = await lstat(file).catch(() => undefined);
    if (!info?.isFile()) continue;
    if (info.size > ARTIFACT_OUTPUT_BYTES) {
      task.trace.setStepArtifact(`${prefix}${step.name}`, step.artifact, `[asp: .asp/${step.artifact} is ${info.size} bytes, more than a span holds; read it there]`);
      continue;
    }
    const text = await readFile(file, 'utf8').catch(() => undefined);
    if (text === undefined) continue;
    let value: unknown = text;
    try {
      value = JSON.parse(text);
    } catch {
      // Not JSON: its text, as it is.
    }
    task.trace.setStepArtifact(`${prefix}${step.name}`, step.artifact, value);
  }
}

/**
 * Reads the test reports of one sandbox's `.asp/` (warning once per refused file) and puts each step's counts on its
 * span. Reports no step names (`.asp/junit/`, `.asp/tap/`) belong to the step that failed, else the last that ran.
 */
async function addTestResults(task: ClaimedTask, dir: string, steps: StepResult[], prefix: string): Promise<TestResults | null> {
  const results = await readTestResults(dir);
  if (!results) return null;
  for (const problem of results.problems) task.warn(prefix ? `${prefix.replace(/:$/, '')}: ${problem}` : problem);
  const ran = steps.filter((step) => step.status !== 'skipped');
  const fallback = (ran.find((step) => step.status !== 'passed') ?? ran[ran.length - 1])?.name;
  for (const group of results.byStep) {
    const step = group.step ?? fallback;
    if (!step) continue;
    const failing = group.cases
      .filter((test) => test.status === 'failed' || test.status === 'error')
      .slice(0, 20)
      .map(testLabel);
    task.trace.setStepTests(`${prefix}${step}`, { ...group.counts, failing, files: results.summary.files });
  }
  if (!prefix) return results;
  return { ...results, summary: { ...results.summary, files: results.summary.files.map((file) => `check/${file}`) } };
}
