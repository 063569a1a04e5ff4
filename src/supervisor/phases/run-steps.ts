import { EXIT } from '../../core/asp-error.js';
import type { Sandbox } from '../../backend/sandbox-backend.js';
import { identityMismatch } from '../../backend/sandbox-policy.js';
import type { CleanupScope } from '../../core/cleanup-stack.js';
import type { Clock } from '../../core/clock.js';
import type { Log } from '../../core/log.js';
import { hostFilePath } from '../../workspace/host-state.js';
import { runSession, type OpenedSandbox, type SessionEnd, type TimePhase } from '../sandbox-session.js';
import { outcomeOf, whyStopped, type SessionOutcome } from '../session-outcome.js';
import type { TaskEgress } from '../task-egress.js';
import type { TaskGateway } from '../task-gateway.js';
import type { ClaimedTask } from './claim-workspace.js';
import type { PreparedFeed } from './feed-workspace.js';
import type { TaskPlan } from './resolve-task.js';

export interface StepsRun {
  end: SessionEnd;
  outcome: SessionOutcome;
}

/**
 * The steps' session: the runner fed, its protocol read into the events, trace and output, its deadlines enforced.
 * The task counts as started from here: its host dir stays, whatever happens next.
 */
export async function runSteps(
  plan: TaskPlan,
  task: ClaimedTask,
  prepared: PreparedFeed,
  sandbox: Sandbox,
  deps: {
    clock: Clock;
    log: Log;
    gateway: TaskGateway | undefined;
    egress?: TaskEgress | undefined;
    signal?: AbortSignal | undefined;
    onIdle?: (() => void) | undefined;
    /** The sandbox opened already, as soon as it existed (openSandbox, timed by sessionPhases). */
    opened?: Promise<OpenedSandbox> | undefined;
  },
  stack: CleanupScope,
): Promise<StepsRun> {
  const { events, trace, warn, taskId } = task;
  const { steps } = prepared;
  events.open(hostFilePath(task.workspace, 'events'));
  stack.defer('events file', () => events.close());
  task.started = true;
  trace.planSteps(steps);
  const relay = deps.egress?.relay();
  // Connections still open when the session ends (the sandbox is gone) end with it.
  stack.defer('egress', () => relay?.close());
  const end = await runSession(
    sandbox,
    {
      steps,
      taskTimeoutMs: plan.spec.limits.timeout,
      deadline: plan.deadline,
      signal: deps.signal,
      feed: prepared.feed,
      env: plan.sandboxEnv,
      stop: deps.gateway?.gateway.stopped,
      verifyIdentity: identityMismatch,
      timePhase: sessionPhases(trace, deps.onIdle),
      opened: deps.opened,
    },
    {
      onMessage: (message, reply) => events.handle(message, reply, deps.gateway?.gateway, relay),
      onStdin: (stdin) => relay?.attach(stdin),
      onWarning: (message) => {
        events.record({ type: 'host.warning', message });
        warn(message);
      },
      onRunnerStderr: (line) => {
        events.record({ type: 'runner.stderr', data: line.slice(0, 4096) });
        deps.log.debug({ taskId }, `sandbox stderr: ${line.slice(0, 4096)}`);
      },
    },
  );
  relay?.close();
  // A pod says which image it ran (its digest) only once it started.
  if (sandbox.imageId) trace.setImageId(sandbox.imageId);
  let outcome = outcomeOf(end);
  events.steps.stop(deps.clock.now(), whyStopped(end));
  if (end.kind === 'exited' && !end.taskEnd && events.stepStarts.size === 0 && steps.length > 0) {
    // The runner stopped before it ran anything (the workspace did not unpack, its runtime failed): that is asp's
    // failure, not the task's, and a batch retries it.
    outcome = { status: 'error', exitCode: EXIT.infrastructure, error: `the sandbox stopped (exit ${end.statusCode}) before running any step` };
  }
  // The engine's disk filled (the runner said so): whatever the steps did, that is no verdict on the task.
  if (events.engineFault && outcome.status !== 'timeout' && outcome.status !== 'interrupted') outcome = { status: 'error', exitCode: EXIT.infrastructure, error: events.engineFault };
  if (outcome.status === 'timeout' || outcome.status === 'interrupted' || end.kind === 'stopped') trace.abandonOpenSteps(outcome.error ?? outcome.status, outcome.exitCode);
  if (end.kind === 'exited' && !end.taskEnd) warn(`the sandbox ended without reporting (exit ${end.statusCode}${end.statusCode === 137 ? await whyKilled(sandbox) : ''})`);
  return { end, outcome };
}

/** The session's phases as the task's trace records them; `runner-boot` is also the task's idle moment (RunDeps.onIdle). */
export function sessionPhases(trace: ClaimedTask['trace'], onIdle: (() => void) | undefined): TimePhase {
  return (name, action) => {
    // The sandbox is started and its runner boots, the host waits: the moment for what can wait (RunDeps.onIdle).
    // Not sooner: run while the attach and the start are in flight, its loading held them back ~25 ms.
    if (name === 'runner-boot') setImmediate(() => onIdle?.());
    return trace.phase(name, action);
  };
}

/**
 * A 137 is any SIGKILL (a step can send one, as can a kill of the container): out of memory only when the engine
 * says its OOM killer struck, never a guess from the number.
 */
async function whyKilled(sandbox: Sandbox): Promise<string> {
  const oom = await sandbox.oomKilled?.().catch(() => undefined);
  return oom ? ': killed, out of memory (the engine says OOMKilled)' : ': killed (SIGKILL)';
}
