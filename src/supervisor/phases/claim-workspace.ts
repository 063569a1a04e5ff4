import type { Settings } from '../../config/settings.js';
import { generateTaskId } from '../../config/task-id.js';
import type { CleanupScope } from '../../core/cleanup-stack.js';
import type { Clock } from '../../core/clock.js';
import type { Log } from '../../core/log.js';
import { currentSupervisor, expiryOf, type Ownership } from '../../backend/ownership-labels.js';
import { TraceRecorder } from '../../tracing/trace-recorder.js';
import { claimWorkspace, removePath, writeOwnerFile, type HostWorkspace } from '../../workspace/host-workspace.js';
import { TaskEvents } from '../task-events.js';
import type { TaskPlan } from './resolve-task.js';

/** A task's own warnings are capped: a hostile step must not grow the result without bound. */
const MAX_WARNINGS = 100;

/** The task once it has an id and a host dir: what every later phase writes to. */
export interface ClaimedTask {
  taskId: string;
  runId: string;
  startedAt: Date;
  workspace: HostWorkspace;
  owner: Ownership;
  /** The branch the sandbox commits on, and the one pushed. */
  branch: string;
  trace: TraceRecorder;
  events: TaskEvents;
  /** Said once each, in the task result too (at most MAX_WARNINGS). */
  warnings: string[];
  warn(message: string): void;
  /** Set once a sandbox session began: from then on the host dir is the task's record, kept whatever happens. */
  started: boolean;
}

export interface ClaimDeps {
  settings: Settings;
  clock: Clock;
  log: Log;
  writeOutput: (text: string) => void;
  reclaimUnfinished?: boolean | undefined;
  /** Langfuse's session of the trace: the batch's id (`asp batch`), or `--session`. */
  session?: string | undefined;
  /** Langfuse's user of the trace (`--user`); else the settings' (ASP_TRACE_USER, the CI actor, the host user). */
  user?: string | undefined;
}

/**
 * Claims `<workspaces>/<task-id>/` (atomically: two runs never share one), writes its owner file, and opens the
 * trace. A task that never gets to run leaves nothing: its dir is undone with the stack.
 */
export async function claimTaskWorkspace(plan: TaskPlan, deps: ClaimDeps, stack: CleanupScope): Promise<ClaimedTask> {
  const { spec, runId, startedAt } = plan;
  const workspace = await claimWorkspace(deps.settings.workspacesRoot, spec.id ?? generateTaskId(spec.task, startedAt), { unique: !spec.id, reclaimUnfinished: deps.reclaimUnfinished });
  const { taskId } = workspace;
  const warnings: string[] = [];
  const warn = (message: string) => {
    if (warnings.length < MAX_WARNINGS) warnings.push(message);
    deps.log.warn({ taskId }, message);
  };
  const trace = new TraceRecorder(
    {
      taskId,
      runId,
      task: spec.task,
      repo: plan.source.display,
      ref: spec.ref,
      workspacePath: workspace.dir,
      limits: limitsForTrace(spec.limits),
      sessionId: deps.session,
      userId: deps.user ?? deps.settings.trace.user,
      environment: deps.settings.trace.environment,
      release: deps.settings.trace.release,
    },
    deps.clock,
  );
  const claimed: ClaimedTask = {
    taskId,
    runId,
    startedAt,
    workspace,
    owner: { taskId, runId, supervisor: currentSupervisor(), expiresAt: expiryOf(startedAt, spec.limits.timeout), keep: spec.keep },
    branch: spec.branch ?? `asp/${taskId}`,
    trace,
    events: new TaskEvents({ taskId, secrets: plan.secrets, clock: deps.clock, log: deps.log, trace, warn, writeOutput: deps.writeOutput, outputCap: spec.outputCap }),
    warnings,
    warn,
    started: false,
  };
  stack.defer('workspace claim', () => (claimed.started ? undefined : removePath(workspace.dir)));
  for (const note of plan.notes) warn(note);
  deps.log.info({ taskId, runId, repo: plan.source.display, workspace: workspace.dir }, `task ${taskId} starting`);
  await writeOwnerFile(workspace, claimed.owner, 'running', startedAt);
  return claimed;
}

function limitsForTrace(limits: TaskPlan['spec']['limits']): Record<string, number> {
  const { timeout, memory, cpus, pids, tmpfs, disk } = limits;
  return { timeout_ms: timeout, memory_bytes: memory, cpus, pids, tmpfs_bytes: tmpfs, disk_bytes: disk };
}
