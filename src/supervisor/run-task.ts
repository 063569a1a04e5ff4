import path from 'node:path';
import { AspError, errorMessage, EXIT, exitCodeFor } from '../core/asp-error.js';
import { CleanupStack } from '../core/cleanup-stack.js';
import type { BackendName, Settings } from '../config/settings.js';
import type { TaskSpec } from '../config/task-spec.js';
import { anchoredClock, type Clock } from '../core/clock.js';
import type { Log } from '../core/log.js';
import type { SandboxBackend } from '../backend/sandbox-backend.js';
import { ownershipLabels } from '../backend/ownership-labels.js';
import { traceCostUsd } from '../tracing/probe-scores.js';
import type { TraceMode } from '../tracing/trace-mode.js';
import type { TestResults } from '../tracing/test-results.js';
import { userCopyPath } from '../workspace/host-state.js';
import type { RepoMirrors } from '../workspace/repo-mirror.js';
import type { CheckResult } from './phases/check.js';
import { claimTaskWorkspace, type ClaimedTask } from './phases/claim-workspace.js';
import { cloneRepos, type ClonedRepos } from './phases/clone-repos.js';
import type { Collected } from './phases/collect.js';
import { prepareFeed, type PreparedFeed } from './phases/feed-workspace.js';
import { resolveTask, type TaskPlan } from './phases/resolve-task.js';
import { runSteps, sessionPhases } from './phases/run-steps.js';
import { bringSandboxUp, type SandboxUp } from './phases/sandbox-up.js';
import type { SessionOutcome, StepResult } from './session-outcome.js';
import { closeUnused, openSandbox } from './sandbox-session.js';
import type { Lookup } from '../egress/egress-relay.js';
import type { WarmSource } from '../pool/warm-source.js';
import { openTaskEgress, type TaskEgress } from './task-egress.js';
import { modelUse, openTaskGateway, type GatewayOverrides, type TaskGateway } from './task-gateway.js';
import type { Deliverable, StepFailure, TaskResult, TaskRun } from './task-result.js';

export type { Deliverable, StepFailure, StepResult, TaskResult, TaskRun };

export interface RunDeps {
  /** Where sandboxes are made: Docker (src/docker/docker-backend.ts) or Kubernetes (src/k8s/k8s-backend.ts). */
  backend: SandboxBackend;
  /** The backend a task names (`"backend"` of a batch line), when it is not `backend`'s. */
  backendFor?: ((name: BackendName) => SandboxBackend) | undefined;
  settings: Settings;
  clock: Clock;
  log: Log;
  cwd: string;
  /** Where step output is printed (prefixed by step). */
  writeOutput: (text: string) => void;
  /** Aborting it (first Ctrl-C) interrupts the task: the sandbox is stopped, `.asp/` copied out, all cleaned up. */
  signal?: AbortSignal | undefined;
  /** Aborting it (second Ctrl-C) skips the copy-out: only quick removal is left. */
  forceSignal?: AbortSignal | undefined;
  /** Where to clone a repository from instead of its origin (the batch's shared mirrors). */
  mirrors?: RepoMirrors | undefined;
  /** Let an explicit id take back the workspace of an earlier run of it that never finished (batch retries, --resume). */
  reclaimUnfinished?: boolean | undefined;
  /** Where the trace goes besides the local JSON (`--trace`); default: Langfuse when keys are set. */
  traceMode?: TraceMode | undefined;
  /** Test seams of the model gateway (a fetch, fast retries). */
  gateway?: GatewayOverrides | undefined;
  /** Langfuse's session and user of the trace (ClaimDeps). */
  session?: string | undefined;
  user?: string | undefined;
  /** Where a warm sandbox may be had before one is made (the pools of `asp pool up`, a batch's next ones). */
  warm?: WarmSource | undefined;
  /**
   * Called once, when the sandbox has started and its runner boots: the host only waits then, and what can wait for it
   * (`asp run`'s sweep of dead runs, modules needed later) runs there instead of before the task.
   */
  onIdle?: (() => void) | undefined;
  /** Test seam of the egress relay: how the host resolves a name (tests have only 127.0.0.1). */
  egressLookup?: Lookup | undefined;
}

/** What the sandbox phases leave for the record, however far they got. */
interface Ran {
  outcome: SessionOutcome;
  image: string | null;
  cloned: ClonedRepos | null;
  prepared: PreparedFeed | null;
  collected: Collected;
  check: CheckResult | null;
  gateway: TaskGateway | undefined;
  egress: TaskEgress | undefined;
  /** What stopped the phases, when something threw: after the record is written, runTask throws it again. */
  failure?: { error: unknown };
}

/**
 * One task, as the list of its phases: resolve → claim the workspace → model gateway → clone ∥ sandbox up → feed →
 * run the steps → collect → check (when asked) → clean up → trace → finish. Everything made on the way is on one
 * cleanup stack, undone in reverse order on every path (interrupts and failures included) at the cleanup phase.
 * Delivery (the HITL gate, push, PR) is not in here: it follows the run (src/delivery/deliver-task.ts).
 */
export async function runTask(input: TaskSpec, given: RunDeps): Promise<TaskRun> {
  // The task reads the wall clock once, here: all it records of time after that moves with the monotonic clock.
  const clock = anchoredClock(given.clock);
  let idled = false;
  const onIdle = () => {
    if (idled) return;
    idled = true;
    void postSession().catch(() => {});
    given.onIdle?.();
  };
  const deps = { ...given, clock, onIdle, ...(input.backend && given.backendFor ? { backend: given.backendFor(input.backend) } : {}) };
  const plan = await resolveTask(input, { settings: deps.settings, cwd: deps.cwd, clock });
  let report = (message: string) => deps.log.warn({}, message);
  await using stack = new CleanupStack(({ error }) => report(`cleanup incomplete: ${errorMessage(error)} (asp reap will finish it)`));
  const task = await claimTaskWorkspace(plan, deps, stack);
  report = task.warn;
  const ran = await runSandboxPhases(plan, task, deps, stack);
  // Container first (a volume in use cannot go), then the volume, the events file, the cassette, and the host dir
  // when nothing ran. With --keep a sandbox that ran stays, for looking into.
  await task.trace.phase('cleanup', () => stack.dispose({ keep: plan.spec.keep && task.started }));
  // Not idle after all (the task ended before its runner booted): what waited for it runs now.
  onIdle();
  if (!task.started) throw ran.failure?.error;
  const { recordTrace, finishTask, CHECK_STEP_PREFIX } = await postSession();

  const steps = ran.prepared?.steps ?? [];
  const checkSteps = ran.prepared?.checkSteps ?? [];
  const { change, extraChanges } = ran.collected;
  const { spec } = plan;
  // What the HITL gate will be shown, said in the trace's first export already (delivery updates it with the decision).
  const hitl = {
    required: spec.hitl,
    awaiting: spec.hitl && !ran.failure && ran.outcome.status === 'passed' && ran.cloned !== null && (change !== null || extraChanges.some((extra) => extra.change)),
  };
  const recorded = await recordTrace(task, { steps, checkSteps, outcome: ran.outcome, check: ran.check, hitl }, deps);
  const deliverables: Deliverable[] = ran.cloned
    ? [
        ...(change ? [{ repo: null, remote: plan.source.location, baseBranch: ran.cloned.baseBranch, change, repoDir: task.workspace.repoDir }] : []),
        ...extraChanges.flatMap((extra) => {
          const repo = ran.cloned?.extras.find((entry) => entry.name === extra.name);
          return extra.change && repo ? [{ repo: repo.name, remote: repo.source.location, baseBranch: repo.baseBranch, change: extra.change, repoDir: repo.dir }] : [];
        }),
      ]
    : [];
  const result: TaskResult = {
    taskId: task.taskId,
    runId: task.runId,
    traceId: task.trace.traceId,
    status: ran.outcome.status,
    exitCode: ran.outcome.exitCode,
    durationMs: recorded.durationMs,
    commit: ran.cloned?.commit ?? null,
    image: ran.image,
    steps: recorded.steps,
    failedStep: failedStep(task, recorded.steps, ran.check, recorded.tests, CHECK_STEP_PREFIX),
    costUsd: traceCostUsd(recorded.trace.document),
    check: ran.check,
    artifacts: [],
    tests: recorded.tests?.summary ?? null,
    change,
    tracePath: userCopyPath(task.workspace, 'trace'),
    traceDelivery: recorded.trace.published?.delivery ?? 'local',
    delivery: null,
    repos: extraChanges,
    workspacePath: task.workspace.dir,
    kept: spec.keep,
    ...(ran.gateway ? { models: modelUse(ran.gateway) } : {}),
    ...(ran.egress ? { egress: ran.egress.summary() } : {}),
    warnings: task.warnings,
    ...(ran.outcome.error ? { error: ran.outcome.error } : {}),
  };
  const run: TaskRun = {
    spec,
    result,
    trace: recorded.trace,
    deliverables,
    awaitingDelivery: !ran.failure && result.status === 'passed' && (spec.hitl || spec.push || spec.pr),
    workspace: task.workspace,
    owner: task.owner,
    startedAt: task.startedAt,
    finishedAt: recorded.finishedAt,
    ...(recorded.tests ? { testCases: recorded.tests.cases } : {}),
  };
  if (!run.awaitingDelivery) run.result = await finishTask(run);
  if (ran.failure) throw ran.failure.error;
  return run;
}

/**
 * The phases that need a sandbox, up to its removal. A failure anywhere stops them and becomes the task's outcome
 * (status error, its exit code); what was made is undone by the stack either way.
 */
async function runSandboxPhases(plan: TaskPlan, task: ClaimedTask, deps: RunDeps, stack: CleanupStack): Promise<Ran> {
  const ran: Ran = {
    outcome: { status: 'error', exitCode: EXIT.infrastructure },
    image: null,
    cloned: null,
    prepared: null,
    collected: { change: null, extraChanges: [] },
    check: null,
    gateway: undefined,
    egress: undefined,
  };
  const { trace } = task;
  // What the gateway and the egress relay record with: the task's clock, trace, events (masked) and warnings.
  const recording = { clock: deps.clock, trace, mask: (text: string) => task.events.mask(text), warn: task.warn, record: (entry: object) => task.events.record(entry) };
  try {
    if (plan.modelChoice) {
      const gateway = await openTaskGateway(plan.modelChoice, deps.settings, plan.spec, { ...recording, overrides: deps.gateway });
      ran.gateway = gateway;
      stack.defer('model gateway', () => gateway.provider.close?.().catch((error: unknown) => task.warn(`could not save the cassette: ${errorMessage(error)}`)));
      deps.log.info({ taskId: task.taskId, provider: gateway.provider.name, model: gateway.provider.model }, `model gateway on: ${gateway.provider.name}:${gateway.provider.model}`);
    }
    ran.egress = openTaskEgress(plan.spec, { ...recording, lookup: deps.egressLookup });
    // The clone and the sandbox are independent until the workspace is fed: made side by side, and both settle before
    // going on. The sandbox's start goes on beside the rest; after a failure its removal waits for it (bounded).
    const [cloned, up] = await settleBoth(
      trace.phase('clone', () => cloneRepos(plan, task, deps)),
      bringSandboxUp(plan, task, deps, stack).then((made: SandboxUp) => {
        ran.image = made.image;
        // Started as soon as it exists: its runner boots while the clone finishes and the feed is made ready.
        const opened = openSandbox(made.sandbox, deps.signal, sessionPhases(trace, deps.onIdle));
        // What failed here is the session's to say (runSteps); one that never began (the clone failed) is closed before
        // the removal deferred earlier (closeUnused).
        opened.catch(() => {});
        stack.defer('sandbox streams', () => closeUnused(opened));
        return { ...made, opened };
      }),
    );
    ran.cloned = cloned;
    const prepared = await prepareFeed(plan, task, cloned, { cwd: deps.cwd, gateway: ran.gateway });
    ran.prepared = prepared;
    const steps = await runSteps(plan, task, prepared, up.sandbox, { ...deps, gateway: ran.gateway, egress: ran.egress, opened: up.opened }, stack);
    ran.outcome = steps.outcome;
    const { collect } = await postSession();
    // The sandbox's removal starts as soon as its `.asp/` is in hand (collect.ts), beside the rest; not with --keep.
    ran.collected = await collect(task, cloned, steps, up.sandbox, { ...deps, removeSandbox: plan.spec.keep ? undefined : () => stack.undoKeepableNow() });
    if (prepared.checkSteps.length && ran.outcome.status === 'passed' && !deps.forceSignal?.aborted) {
      ran.check = await checkChange(plan, task, prepared, up.image, ran.collected, { ...deps, egress: ran.egress });
      if (ran.check.status !== 'passed') ran.outcome = { status: ran.check.status, exitCode: ran.check.exitCode, ...(ran.check.error ? { error: ran.check.error } : {}) };
    }
  } catch (error) {
    ran.failure = { error };
    ran.outcome = { status: 'error', exitCode: error instanceof AspError ? exitCodeFor(error.code) : EXIT.infrastructure, error: errorMessage(error) };
  }
  return ran;
}

/** The steps passed in their own sandbox: the clean-room check, in a fresh one, decides whether the task did. */
async function checkChange(plan: TaskPlan, task: ClaimedTask, prepared: PreparedFeed, image: string, collected: Collected, deps: RunDeps & { egress: TaskEgress | undefined }): Promise<CheckResult> {
  const { change, extraChanges } = collected;
  const { checkSteps, sandboxTask } = prepared;
  deps.log.info(
    { taskId: task.taskId, commit: change?.head ?? sandboxTask.baseCommit },
    `clean-room check: ${checkSteps.length} step(s) on ${change ? `the change (${change.head.slice(0, 12)})` : 'the base commit (no change came back)'}`,
  );
  const { runCheck } = await postSession();
  return task.trace.phase('check', () =>
    runCheck(
      {
        runId: task.runId,
        agentTask: sandboxTask,
        deadline: plan.deadline,
        image,
        labels: ownershipLabels(task.owner),
        limits: plan.spec.limits,
        allowedEnv: plan.sandboxEnv,
        runtime: plan.spec.runtime,
        steps: checkSteps,
        checkDir: plan.checkDir,
        workspace: task.workspace,
        change,
        extraChanges: new Map(extraChanges.map((extra) => [extra.name, extra.change])),
      },
      { backend: deps.backend, clock: deps.clock, trace: task.trace, events: task.events, log: deps.log, warn: task.warn, egress: deps.egress, signal: deps.signal, forceSignal: deps.forceSignal },
    ),
  );
}

/** A task whose steps passed can still fail its clean-room check: then the check's step is the one to show. */
function failedStep(task: ClaimedTask, steps: StepResult[], check: CheckResult | null, tests: TestResults | null, checkPrefix: string): StepFailure | null {
  const failing = (list: StepResult[]) => list.find((step) => step.status === 'failed' || step.status === 'timeout' || step.status === 'interrupted');
  const own = failing(steps);
  const checked = own ? undefined : failing(check?.steps ?? []);
  const step = own ?? checked;
  if (!step) return null;
  const name = checked ? `${checkPrefix}${step.name}` : step.name;
  const record = task.events.steps.record(name, step.exitCode);
  // The runner's own word on a step it ended or could not start (the disk limit, no shell in the image), when it said.
  const said = step.status === 'failed' && record?.reason ? `: ${record.reason.slice(0, 300)}` : '';
  const reason = step.status === 'failed' ? `step ${name} exited ${step.exitCode}${said}` : `step ${name} ${step.status === 'timeout' ? 'passed its deadline' : 'was interrupted'}`;
  const logs = [userCopyPath(task.workspace, 'events'), path.join(checked && check ? check.artifactsDir : task.workspace.artifactsDir, `${step.name}.json`)];
  return { step: name, status: step.status, exitCode: step.exitCode, reason, outputTail: record?.outputTail || null, firstFailingTest: tests?.summary.failing[0] ?? null, logs };
}

let loadingPostSession: Promise<typeof import('./phases/post-session.js')> | undefined;

/** The phases after the session, loaded once per process (from the first task's idle moment, or when first needed). */
function postSession(): Promise<typeof import('./phases/post-session.js')> {
  loadingPostSession ??= import('./phases/post-session.js');
  return loadingPostSession;
}

async function settleBoth<A, B>(first: Promise<A>, second: Promise<B>): Promise<[A, B]> {
  const [a, b] = await Promise.allSettled([first, second]);
  if (a.status === 'rejected') throw a.reason;
  if (b.status === 'rejected') throw b.reason;
  return [a.value, b.value];
}
