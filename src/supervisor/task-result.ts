import { EXIT } from '../core/asp-error.js';
import type { TaskSpec } from '../config/task-spec.js';
import type { DeliveryOutcome } from '../core/records.js';
import type { Ownership } from '../backend/ownership-labels.js';
import type { TracePublication, TraceDelivery } from '../tracing/publish-trace.js';
import type { TaskStatus } from '../tracing/trace-model.js';
import type { ChangeReport } from '../workspace/change-bundle.js';
import type { ExtraChange } from '../workspace/extra-repos.js';
import type { HostWorkspace } from '../workspace/host-workspace.js';
import type { CheckResult } from './phases/check.js';
import type { StepResult } from './session-outcome.js';
import type { EgressSummary } from '../egress/egress-relay.js';
import type { ModelUse } from './task-gateway.js';
import type { FailingTest, TestCaseResult, TestSummary } from '../tracing/test-results.js';

export type { StepResult };

/** The step that decided a task that did not pass, with what it said last: batch reports and CI show this. */
export interface StepFailure {
  /** The step's name; a clean-room check's step is `check:<name>`. */
  step: string;
  status: StepResult['status'];
  exitCode: number | null;
  /** One line: "step test exited 1", "step slow passed its deadline". */
  reason: string;
  /** The last 4 KiB of its output as the host saw it on the protocol, secrets masked; null when it printed nothing. */
  outputTail: string | null;
  /** The first failing test of the task's test reports, when they name one. */
  firstFailingTest?: FailingTest | null;
  /** Where the whole of its output is: the task's events.jsonl and the step's `<step>.json`, on the host. */
  logs?: string[];
}

export interface TaskResult {
  taskId: string;
  runId: string;
  traceId: string;
  /**
   * The pipeline's outcome; after delivery, awaiting_approval while the HITL gate waits for `asp approve`, rejected
   * when it was denied, failed when the push or PR failed.
   */
  status: TaskStatus | 'awaiting_approval' | 'rejected';
  exitCode: number;
  durationMs: number;
  commit: string | null;
  image: string | null;
  steps: StepResult[];
  /** The first step (of the steps, then of the check) that failed, timed out or was interrupted; null otherwise. */
  failedStep: StepFailure | null;
  /** What the task's model calls cost in USD (its probe_cost_usd score); 0 when it made none. */
  costUsd: number;
  artifacts: string[];
  /** The repository's own test results (JUnit, TAP) as the steps reported them: counts and failing tests; null when none. */
  tests?: TestSummary | null;
  /**
   * The clean-room check, when the task has one and its steps passed: what the fresh sandbox ran against, how each
   * check step ended; its outcome is the task's. null otherwise.
   */
  check: CheckResult | null;
  /** What the sandbox changed, fetched from its bundle into the host's clone; null when nothing changed. */
  change: ChangeReport | null;
  /** The HITL gate and push/PR, when asked for (--hitl, --push, --pr). */
  delivery: DeliveryOutcome | null;
  /** The other repositories of a multi-repo task, and what changed in each. */
  repos: ExtraChange[];
  tracePath: string;
  /** Whether Langfuse took the trace, it waits in the outbox, or it is local only. */
  traceDelivery?: TraceDelivery;
  workspacePath: string;
  kept: boolean;
  /** Model calls through the host's gateway, when a model was configured. */
  models?: ModelUse;
  /** Connections through the host (`--allow-host`), when the task allowed any: each is in events.jsonl and the trace. */
  egress?: EgressSummary;
  warnings: string[];
  error?: string;
}

/** One repository's change, as delivery after the run takes it: where it goes and where the host holds it. */
export interface Deliverable {
  /** null for the task's own repository, else the name of one of its other repositories (`repos/<name>`). */
  repo: string | null;
  /** The repository as the task spec named it (never the mirror): where the branch is pushed. */
  remote: string;
  /** The branch the task started from, which a pull request targets; null when unknown. */
  baseBranch: string | null;
  change: ChangeReport;
  /** The host's clean clone that holds the fetched change. */
  repoDir: string;
}

/**
 * A task that ran, as the supervisor hands it on. When it passed and asked for delivery (--hitl, --push, --pr),
 * delivery (src/delivery/) takes it from here and finishes it; otherwise it is finished already: its result and
 * owner file are written and its clone is gone unless kept.
 */
export interface TaskRun {
  spec: TaskSpec;
  result: TaskResult;
  trace: TracePublication;
  deliverables: Deliverable[];
  /** True when delivery is to follow: until then the owner file still says running, so nothing reaps the clone. */
  awaitingDelivery: boolean;
  workspace: HostWorkspace;
  owner: Ownership;
  startedAt: Date;
  finishedAt: Date;
  /** The testcases of the task's test reports (in memory only, until a batch renders its bounded JUnit of them; result.json has the summary). */
  testCases?: TestCaseResult[];
}

/**
 * A result once delivery decided, whole: the one rule for `asp run` (the gate right after the run) and
 * `asp approve` (the gate later). Waiting (no decision yet, or deferred) is awaiting_approval; a denial is
 * rejected; a push or PR that failed is failed, with its error; approved or not asked, the run's own status stands.
 */
export function withDelivery<R extends { status: string; exitCode: number; error?: string | undefined }>(
  result: R,
  delivery: DeliveryOutcome | null,
  kept: boolean,
): Omit<R, 'status' | 'exitCode' | 'error'> & { status: R['status'] | DeliveredStatus; exitCode: number; delivery: DeliveryOutcome | null; kept: boolean; error?: string } {
  const { error: ownError, status: ownStatus, exitCode: ownExitCode, ...rest } = result;
  const status = deliveredStatus(ownStatus, delivery);
  const error = delivery?.error ?? ownError;
  return { ...rest, status, exitCode: delivery?.error ? EXIT.taskFailed : ownExitCode, delivery, kept, ...(error ? { error } : {}) };
}

export type DeliveredStatus = 'awaiting_approval' | 'rejected' | 'failed';

function deliveredStatus<S extends string>(status: S, delivery: DeliveryOutcome | null): S | DeliveredStatus {
  if (!delivery) return status;
  if (delivery.error) return 'failed';
  if (delivery.hitlStatus === 'awaiting_approval' || delivery.hitlStatus === 'deferred') return 'awaiting_approval';
  if (delivery.hitlStatus === 'rejected') return 'rejected';
  return status;
}
